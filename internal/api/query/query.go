// Package query serves the AWS query-protocol APIs skiff implements, IAM
// (2010-05-08) and STS (2011-06-15): form-encoded Action requests and XML
// responses, with the error codes botocore's models name.
package query

import (
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"skiff.dev/skiff/internal/api/awserr"
	"skiff.dev/skiff/internal/authz"
	"skiff.dev/skiff/internal/iam"
)

// Handler serves IAM and STS; the caller's identity comes from Caller.
type Handler struct {
	IAM    *iam.Service
	Caller func(r *http.Request) *iam.Principal
	// Service is "iam" or "sts".
	Service string
	// Context, if set, gives a request's global condition keys (for trust
	// policies' conditions).
	Context func(r *http.Request, caller *iam.Principal) map[string][]string
}

const (
	iamNS = "https://iam.amazonaws.com/doc/2010-05-08/"
	stsNS = "https://sts.amazonaws.com/doc/2011-06-15/"
)

// ServeHTTP dispatches on Action. form is the parsed body or query.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		WriteError(w, awserr.New(http.StatusBadRequest, "MalformedInput", "the request body is not form-encoded: "+err.Error()))
		return
	}
	action, form, caller := r.Form.Get("Action"), r.Form, h.Caller(r)
	var result any
	var err error
	switch h.Service + ":" + action {
	case "sts:GetCallerIdentity":
		result = struct {
			Arn     string `xml:"Arn"`
			UserId  string `xml:"UserId"`
			Account string `xml:"Account"`
		}{caller.Arn, caller.UserID, caller.Account}
	case "sts:AssumeRole":
		result, err = h.assumeRole(r, caller, form)
	case "iam:CreateUser":
		var u *iam.User
		u, err = h.IAM.CreateUser(caller.Account, form.Get("UserName"), form.Get("Path"))
		result = struct{ User userXML }{toUser(u)}
	case "iam:GetUser":
		name := form.Get("UserName")
		if name == "" {
			name = caller.User
		}
		var u *iam.User
		if u, err = h.IAM.GetUser(caller.Account, name); err == nil {
			result = struct{ User userXML }{toUser(u)}
		}
	case "iam:ListUsers":
		var users []iam.User
		users, err = h.IAM.ListUsers(caller.Account)
		out := struct {
			Users       []userXML `xml:"Users>member"`
			IsTruncated bool
		}{Users: []userXML{}}
		for i := range users {
			out.Users = append(out.Users, toUser(&users[i]))
		}
		result = out
	case "iam:DeleteUser":
		err = h.IAM.DeleteUser(caller.Account, form.Get("UserName"))
	case "iam:CreateAccessKey":
		user := form.Get("UserName")
		if user == "" {
			user = caller.User
		}
		var k *iam.AccessKey
		if k, err = h.IAM.CreateAccessKey(caller.Account, user); err == nil {
			result = struct{ AccessKey keyXML }{keyXML{UserName: k.User, AccessKeyId: k.ID, Status: k.Status,
				SecretAccessKey: k.Secret, CreateDate: k.CreatedAt.Format(time.RFC3339)}}
		}
	case "iam:ListAccessKeys":
		user := form.Get("UserName")
		if user == "" {
			user = caller.User
		}
		var keys []iam.AccessKey
		keys, err = h.IAM.ListAccessKeys(caller.Account, user)
		out := struct {
			AccessKeyMetadata []keyXML `xml:"AccessKeyMetadata>member"`
			IsTruncated       bool
		}{AccessKeyMetadata: []keyXML{}}
		for _, k := range keys {
			out.AccessKeyMetadata = append(out.AccessKeyMetadata, keyXML{UserName: k.User, AccessKeyId: k.ID, Status: k.Status, CreateDate: k.CreatedAt.Format(time.RFC3339)})
		}
		result = out
	case "iam:DeleteAccessKey":
		user := form.Get("UserName")
		if user == "" {
			user = caller.User
		}
		err = h.IAM.DeleteAccessKey(caller.Account, user, form.Get("AccessKeyId"))
	case "iam:CreateRole":
		maxSession, _ := strconv.Atoi(form.Get("MaxSessionDuration"))
		var role *iam.Role
		if role, err = h.IAM.CreateRole(caller.Account, form.Get("RoleName"), form.Get("Path"), form.Get("AssumeRolePolicyDocument"), form.Get("Description"), maxSession); err == nil {
			result = struct{ Role roleXML }{toRole(role)}
		}
	case "iam:GetRole":
		var role *iam.Role
		if role, err = h.IAM.GetRole(caller.Account, form.Get("RoleName")); err == nil {
			result = struct{ Role roleXML }{toRole(role)}
		}
	case "iam:ListRoles":
		var roles []iam.Role
		roles, err = h.IAM.ListRoles(caller.Account)
		out := struct {
			Roles       []roleXML `xml:"Roles>member"`
			IsTruncated bool
		}{Roles: []roleXML{}}
		for i := range roles {
			out.Roles = append(out.Roles, toRole(&roles[i]))
		}
		result = out
	case "iam:DeleteRole":
		err = h.IAM.DeleteRole(caller.Account, form.Get("RoleName"))
	default:
		var ok bool
		if h.Service == "iam" {
			result, err, ok = h.policyAction(action, caller, form)
		}
		if !ok {
			WriteError(w, awserr.New(http.StatusBadRequest, "InvalidAction",
				fmt.Sprintf("%s is not an %s action skiff implements", action, h.Service)))
			return
		}
	}
	if err != nil {
		WriteError(w, mapError(err))
		return
	}
	h.write(w, action, result)
}

func (h *Handler) assumeRole(r *http.Request, caller *iam.Principal, form url.Values) (any, error) {
	for _, unsupported := range []string{"Policy", "PolicyArns.member.1", "Tags.member.1", "TransitiveTagKeys.member.1", "SerialNumber", "TokenCode", "SourceIdentity", "ProvidedContexts.member.1"} {
		if form.Get(unsupported) != "" {
			return nil, fmt.Errorf("%w: skiff's AssumeRole does not support %s", iam.ErrInvalid, strings.SplitN(unsupported, ".", 2)[0])
		}
	}
	duration := 0
	if v := form.Get("DurationSeconds"); v != "" {
		var err error
		if duration, err = strconv.Atoi(v); err != nil {
			return nil, fmt.Errorf("%w: DurationSeconds must be a number of seconds", iam.ErrInvalid)
		}
	}
	if form.Get("RoleArn") == "" {
		return nil, fmt.Errorf("%w: RoleArn is required", iam.ErrInvalid)
	}
	req := iam.AssumeRequest{RoleArn: form.Get("RoleArn"), SessionName: form.Get("RoleSessionName"), Duration: duration,
		ExternalID: form.Get("ExternalId"), Identity: authz.IdentityDecision(r.Context())}
	if h.Context != nil {
		req.Context = h.Context(r, caller)
	}
	sess, role, err := h.IAM.AssumeRole(caller, req)
	if err != nil {
		return nil, err
	}
	return struct {
		Credentials struct {
			AccessKeyId     string
			SecretAccessKey string
			SessionToken    string
			Expiration      string
		}
		AssumedRoleUser struct {
			AssumedRoleId string
			Arn           string
		}
	}{
		Credentials: struct {
			AccessKeyId     string
			SecretAccessKey string
			SessionToken    string
			Expiration      string
		}{sess.AccessKeyID, sess.Secret, sess.Token, sess.Expiration.Format(time.RFC3339)},
		AssumedRoleUser: struct {
			AssumedRoleId string
			Arn           string
		}{role.ID + ":" + sess.Name, fmt.Sprintf("arn:aws:sts::%s:assumed-role/%s/%s", role.Account, role.Name, sess.Name)},
	}, nil
}

type userXML struct {
	Path, UserName, UserId, Arn, CreateDate string
}

func toUser(u *iam.User) userXML {
	if u == nil {
		return userXML{}
	}
	return userXML{u.Path, u.Name, u.ID, u.Arn(), u.CreatedAt.Format(time.RFC3339)}
}

type keyXML struct {
	UserName        string
	AccessKeyId     string
	Status          string
	SecretAccessKey string `xml:",omitempty"`
	CreateDate      string
}

type roleXML struct {
	Path, RoleName, RoleId, Arn, CreateDate string
	AssumeRolePolicyDocument                string
	Description                             string `xml:",omitempty"`
	MaxSessionDuration                      int
}

func toRole(r *iam.Role) roleXML {
	return roleXML{r.Path, r.Name, r.ID, r.Arn(), r.CreatedAt.Format(time.RFC3339),
		url.QueryEscape(r.AssumeRolePolicy), r.Description, r.MaxSessionDuration}
}

// write renders <ActionResponse><ActionResult>…</ActionResult><ResponseMetadata/></ActionResponse>.
func (h *Handler) write(w http.ResponseWriter, action string, result any) {
	ns := iamNS
	if h.Service == "sts" {
		ns = stsNS
	}
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(http.StatusOK)
	w.Write([]byte(xml.Header))
	enc := xml.NewEncoder(w)
	start := xml.StartElement{Name: xml.Name{Local: action + "Response"}, Attr: []xml.Attr{{Name: xml.Name{Local: "xmlns"}, Value: ns}}}
	enc.EncodeToken(start)
	if result != nil {
		enc.EncodeElement(result, xml.StartElement{Name: xml.Name{Local: action + "Result"}})
	}
	enc.EncodeElement(struct{ RequestId string }{awserr.RequestID()}, xml.StartElement{Name: xml.Name{Local: "ResponseMetadata"}})
	enc.EncodeToken(start.End())
	enc.Flush()
}

func mapError(err error) *awserr.Error {
	msg := err.Error()
	for _, kind := range []error{iam.ErrMalformedPolicy, iam.ErrNoSuchEntity, iam.ErrExists, iam.ErrInvalid, iam.ErrDeleteConflict, iam.ErrAccessDenied, iam.ErrLimit} {
		if errors.Is(err, kind) {
			msg = msg[len(kind.Error())+2:]
		}
	}
	switch {
	case errors.Is(err, iam.ErrMalformedPolicy):
		return awserr.New(http.StatusBadRequest, "MalformedPolicyDocument", msg)
	case errors.Is(err, iam.ErrNoSuchEntity):
		return awserr.New(http.StatusNotFound, "NoSuchEntity", msg)
	case errors.Is(err, iam.ErrExists):
		return awserr.New(http.StatusConflict, "EntityAlreadyExists", msg)
	case errors.Is(err, iam.ErrInvalid):
		return awserr.New(http.StatusBadRequest, "ValidationError", msg)
	case errors.Is(err, iam.ErrDeleteConflict):
		return awserr.New(http.StatusConflict, "DeleteConflict", msg)
	case errors.Is(err, iam.ErrLimit):
		return awserr.New(http.StatusConflict, "LimitExceeded", msg)
	case errors.Is(err, iam.ErrAccessDenied):
		return awserr.New(http.StatusForbidden, "AccessDenied", msg)
	}
	return awserr.New(http.StatusInternalServerError, "ServiceFailure", "skiff could not complete the request; retry, and see the skiff serve log if it persists")
}

// WriteError writes an AWS query-protocol XML error.
func WriteError(w http.ResponseWriter, e *awserr.Error) { awserr.WriteQuery(w, e) }
