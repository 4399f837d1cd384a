package query

import (
	"bytes"
	"crypto/sha256"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"skiff.dev/skiff/internal/iam"
	"skiff.dev/skiff/internal/store"
)

// fuzzDir is where the fuzz targets' stores live: tmpfs if the machine has
// one, because every input gets a fresh store (so that a failing input
// reproduces on its own) and bbolt syncs every write.
func fuzzDir(t *testing.T) string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		dir, err := os.MkdirTemp("/dev/shm", "skiff-fuzz-")
		if err == nil {
			t.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return t.TempDir()
}

// fuzzFixture is an account with one of everything IAM has: user alice (with
// a key, in group devs, with managed policy p attached and an inline
// policy), role web (trusting the account) and the account's admin.
type fuzzFixture struct {
	ids          *iam.Service
	st           *store.Store
	account      string // its ID: inputs say 000000000000
	admin, alice *iam.Principal
}

const trustAccount = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::%s:root"},"Action":"sts:AssumeRole"}]}`

const allowAll = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`

func newFuzzFixture(t *testing.T) *fuzzFixture {
	st, err := store.Open(filepath.Join(fuzzDir(t), "skiff.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ids := &iam.Service{Store: st}
	acct, key, err := ids.EnsureAccount("fuzz")
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err = ids.CreateUser(acct.ID, "alice", "/team/")
	must(err)
	k, err := ids.CreateAccessKey(acct.ID, "alice")
	must(err)
	_, err = ids.CreateRole(acct.ID, "web", "", strings.ReplaceAll(trustAccount, "%s", acct.ID), "", 0)
	must(err)
	_, err = ids.CreateGroup(acct.ID, "devs", "")
	must(err)
	must(ids.AddUserToGroup(acct.ID, "devs", "alice"))
	p, err := ids.CreatePolicy(acct.ID, "p", "", allowAll, "")
	must(err)
	must(ids.AttachPolicy(iam.KindUser, acct.ID, "alice", p.Arn()))
	must(ids.PutInlinePolicy(iam.KindRole, acct.ID, "web", "inline", allowAll))
	f := &fuzzFixture{ids: ids, st: st, account: acct.ID}
	if f.admin, err = ids.Principal(key.ID); err != nil {
		t.Fatal(err)
	}
	if f.alice, err = ids.Principal(k.ID); err != nil {
		t.Fatal(err)
	}
	return f
}

// snapshot hashes every identity record: a failed request must not change it.
func (f *fuzzFixture) snapshot(t *testing.T) [32]byte {
	h := sha256.New()
	err := f.st.IdentityView(func(tx *store.Tx) error {
		return tx.Scan("", func(key string, data []byte) error {
			h.Write([]byte(key))
			h.Write([]byte{0})
			h.Write(data)
			h.Write([]byte{0})
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// fuzzQuery serves each line of requests (a form body; with the GET bit of
// how, a query string) to a query-protocol handler for service, as the
// admin or (how&1) as alice. Properties: no panic; no status >= 500; every
// answer is well-formed XML, <ACTIONResponse> on success (only for an
// action that exists) and an <ErrorResponse> with a code otherwise; a
// failed request leaves the identity store unchanged.
func fuzzQuery(t *testing.T, service string, how uint8, requests string) {
	f := newFuzzFixture(t)
	caller := f.admin
	if how&1 != 0 {
		caller = f.alice
	}
	h := &Handler{IAM: f.ids, Service: service, Caller: func(*http.Request) *iam.Principal { return caller }}
	lines := strings.Split(requests, "\n")
	if len(lines) > 20 {
		lines = lines[:20] // state machines, not throughput
	}
	for _, line := range lines {
		// The account ID is random: inputs name it with a placeholder.
		line = strings.ReplaceAll(line, "000000000000", f.account)
		var req *http.Request
		if how&2 != 0 {
			req = httptest.NewRequest(http.MethodGet, "/", nil)
			req.URL.RawQuery = line
		} else {
			req = httptest.NewRequest(http.MethodPost, "/", strings.NewReader(line))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		}
		before := f.snapshot(t)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %q: status %d: %s", service, line, rec.Code, rec.Body)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "text/xml" {
			t.Fatalf("%s %q: Content-Type %q", service, line, ct)
		}
		root, code := xmlRoot(t, rec.Body.Bytes())
		form, _ := url.ParseQuery(line)
		switch {
		case rec.Code == http.StatusOK:
			if action := form.Get("Action"); root != action+"Response" {
				t.Fatalf("%s %q: 200 with root <%s>", service, line, root)
			}
		case root != "ErrorResponse" || code == "":
			t.Fatalf("%s %q: status %d with root <%s>, code %q", service, line, rec.Code, root, code)
		default:
			if f.snapshot(t) != before {
				t.Fatalf("%s %q: refused (%d %s) but the identity store changed", service, line, rec.Code, code)
			}
		}
	}
}

// xmlRoot checks that data is one well-formed XML document and returns its
// root element's name and, for an ErrorResponse, Error/Code.
func xmlRoot(t *testing.T, data []byte) (root, code string) {
	dec := xml.NewDecoder(bytes.NewReader(data))
	var path []string
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("response is not XML: %v\n%s", err, data)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if len(path) == 0 {
				if root != "" {
					t.Fatalf("two root elements:\n%s", data)
				}
				root = tok.Name.Local
			}
			path = append(path, tok.Name.Local)
		case xml.EndElement:
			path = path[:len(path)-1]
		case xml.CharData:
			if strings.Join(path, "/") == "ErrorResponse/Error/Code" {
				code += string(tok)
			}
		}
	}
	return root, code
}

func FuzzIAM(f *testing.F) {
	for _, seed := range []string{
		"Action=ListUsers&Version=2010-05-08",
		"Action=CreateUser&UserName=bob&Path=%2Fx%2F\nAction=CreateAccessKey&UserName=bob\nAction=DeleteUser&UserName=bob",
		"Action=GetUser",
		"Action=CreateRole&RoleName=r&AssumeRolePolicyDocument=" + url.QueryEscape(allowAll) + "&MaxSessionDuration=99999999999999999999",
		"Action=CreateRole&RoleName=r2&Description=d&AssumeRolePolicyDocument=" + url.QueryEscape(strings.ReplaceAll(trustAccount, "%s", "000000000000")) + "\nAction=GetRole&RoleName=r2\nAction=ListRoles",
		"Action=CreatePolicy&PolicyName=q&PolicyDocument=" + url.QueryEscape(`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":["eks:*"],"Resource":"*","Condition":{"StringLike":{"aws:username":["a*"]}}}}`),
		"Action=CreatePolicyVersion&PolicyArn=arn:aws:iam::000000000000:policy/p&PolicyDocument=%7B%7D&SetAsDefault=true",
		"Action=ListPolicies&Scope=Local&OnlyAttached=true&PathPrefix=%2F",
		"Action=AttachUserPolicy&UserName=alice&PolicyArn=arn:aws:iam::aws:policy/AdministratorAccess\nAction=ListAttachedUserPolicies&UserName=alice",
		"Action=PutGroupPolicy&GroupName=devs&PolicyName=g&PolicyDocument=" + url.QueryEscape(allowAll) + "\nAction=GetGroupPolicy&GroupName=devs&PolicyName=g\nAction=DeleteGroup&GroupName=devs",
		"Action=RemoveUserFromGroup&GroupName=devs&UserName=alice\nAction=GetGroup&GroupName=devs",
		"Action=DeleteRolePolicy&RoleName=web&PolicyName=inline\nAction=DeleteRole&RoleName=web",
		"Action=SimulatePrincipalPolicy&PolicySourceArn=arn:aws:iam::000000000000:user/team/alice&ActionNames.member.1=eks:ListClusters&ResourceArns.member.1=*&ContextEntries.member.1.ContextKeyName=aws:username&ContextEntries.member.1.ContextKeyValues.member.1=x",
		"Action=UpdateAssumeRolePolicy&RoleName=web&PolicyDocument=%7B",
		"Action=ListAccessKeys\nAction=DeleteAccessKey&AccessKeyId=AKIA0000",
		"Action=CreateUser&UserName=%FF%FE&Path=%2F",
		"Action=CreateUser&UserName=a&UserName=b",
		"Action=%00",
		"Action=ListUsers&x=%zz",
		"Action=GetPolicyVersion&PolicyArn=arn:aws:iam::aws:policy/AdministratorAccess&VersionId=v1",
	} {
		f.Add(uint8(0), seed)
		f.Add(uint8(1), seed)
	}
	f.Add(uint8(2), "Action=ListGroupsForUser&UserName=alice")
	f.Fuzz(func(t *testing.T, how uint8, requests string) { fuzzQuery(t, "iam", how, requests) })
}

func FuzzSTS(f *testing.F) {
	for _, seed := range []string{
		"Action=GetCallerIdentity&Version=2011-06-15",
		"Action=AssumeRole&RoleArn=arn:aws:iam::000000000000:role/web&RoleSessionName=s1&DurationSeconds=900",
		"Action=AssumeRole&RoleArn=arn:aws:iam::000000000000:role/web&RoleSessionName=s1&DurationSeconds=99999999999999999999999",
		"Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A%3Arole%2F&RoleSessionName=%FF",
		"Action=AssumeRole&RoleArn=arn:aws:iam::000000000000:role/web&RoleSessionName=ss&Policy=x",
		"Action=AssumeRole&RoleArn=arn:aws:iam::000000000000:role/web&RoleSessionName=ss&ExternalId=e&DurationSeconds=-1",
		"Action=GetSessionToken",
		"Action=",
	} {
		f.Add(uint8(0), seed)
		f.Add(uint8(1), seed)
		f.Add(uint8(2), seed)
	}
	f.Fuzz(func(t *testing.T, how uint8, requests string) { fuzzQuery(t, "sts", how, requests) })
}
