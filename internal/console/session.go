package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Sign-in links (`skiff console`): "skiff-console-v1." + base64url of a
// presigned STS GetCallerIdentity URL whose signed header x-skiff-console
// says it is for the console (so that a kubectl token, whose signed
// header is x-k8s-aws-id, is no sign-in link). Like AWS's federation
// sign-in URL, a link is good once and for LinkMaxAge.
const (
	LinkPrefix = "skiff-console-v1."
	LinkHeader = "x-skiff-console"
	LinkMaxAge = 5 * time.Minute
)

// SessionTTL is how long a console session lasts (an AWS console
// session of an IAM user lasts 12 hours).
const SessionTTL = 12 * time.Hour

const cookieName = "skiff-console"

// session is one signed-in browser. It holds the access key the person
// signed in with, never its secret: the console signs each call with the
// secret the identity store holds for that key at the time, so a key
// deleted or deactivated ends the session at its next call.
type session struct {
	AccessKeyID string
	Arn         string
	Account     string
	CSRF        string // echoed by every form that changes something
	Expires     time.Time
}

// sessions are the console's sessions, by the SHA-256 of their cookie
// (a leaked memory dump names no cookie), and the sign-in links used.
// They live in memory: a restart of skiff signs everyone out.
type sessions struct {
	mu   sync.Mutex
	byID map[string]*session
	used map[string]time.Time // link signature → when it stops mattering
}

func newSessions() *sessions {
	return &sessions{byID: map[string]*session{}, used: map[string]time.Time{}}
}

func hashID(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

func random() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// add starts a session and returns its cookie value.
func (s *sessions) add(sess session, now time.Time) string {
	id := random()
	sess.CSRF = random()
	sess.Expires = now.Add(SessionTTL)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	s.byID[hashID(id)] = &sess
	return id
}

func (s *sessions) get(id string, now time.Time) (*session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.byID[hashID(id)]
	if !ok || !now.Before(sess.Expires) {
		return nil, false
	}
	c := *sess
	return &c, true
}

func (s *sessions) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, hashID(id))
}

// sweep forgets expired sessions and links (under mu).
func (s *sessions) sweep(now time.Time) {
	for k, sess := range s.byID {
		if !now.Before(sess.Expires) {
			delete(s.byID, k)
		}
	}
	for k, until := range s.used {
		if !now.Before(until) {
			delete(s.used, k)
		}
	}
}

// spend marks a link's signature used; false if it was already.
func (s *sessions) spend(sig string, until time.Time, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	if _, ok := s.used[sig]; ok {
		return false
	}
	s.used[sig] = until
	return true
}

// validCSRF compares a form's token with the session's in constant time.
func validCSRF(sess *session, token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(sess.CSRF), []byte(token)) == 1
}

// link is a parsed sign-in link.
type link struct {
	URL         *url.URL
	AccessKeyID string
	Signature   string
	Until       time.Time // when it stops being valid
}

// parseLink checks a sign-in link's form (its signature is the API's to
// check).
func parseLink(token string, now time.Time) (*link, error) {
	if !strings.HasPrefix(token, LinkPrefix) || len(token) > 8<<10 {
		return nil, errors.New("this is not a sign-in link of skiff's console: make one with 'skiff console'")
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(token, LinkPrefix))
	if err != nil {
		return nil, errors.New("the sign-in link is damaged: copy all of it, or make a new one with 'skiff console'")
	}
	u, err := url.Parse(string(raw))
	if err != nil || u.Path != "/" && u.Path != "" {
		return nil, errors.New("the sign-in link is damaged: make a new one with 'skiff console'")
	}
	q := u.Query()
	if q.Get("Action") != "GetCallerIdentity" {
		return nil, errors.New("the sign-in link does not ask for the caller's identity: make a new one with 'skiff console'")
	}
	if !slices.Contains(strings.Split(q.Get("X-Amz-SignedHeaders"), ";"), LinkHeader) {
		return nil, errors.New("the sign-in link is not for the console (a kubectl token is not a sign-in link): make one with 'skiff console'")
	}
	akid, _, _ := strings.Cut(q.Get("X-Amz-Credential"), "/")
	at, err := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
	expires, err2 := strconv.Atoi(q.Get("X-Amz-Expires"))
	if akid == "" || q.Get("X-Amz-Signature") == "" || err != nil || err2 != nil {
		return nil, errors.New("the sign-in link is damaged: make a new one with 'skiff console'")
	}
	until := at.Add(min(time.Duration(expires)*time.Second, LinkMaxAge))
	if !now.Before(until) {
		return nil, fmt.Errorf("the sign-in link expired at %s (a link is good for %s): make a new one with 'skiff console'",
			until.UTC().Format(time.RFC3339), LinkMaxAge)
	}
	return &link{URL: u, AccessKeyID: akid, Signature: q.Get("X-Amz-Signature"), Until: until}, nil
}

// identity is GetCallerIdentity's answer.
type identity struct {
	Arn     string `xml:"GetCallerIdentityResult>Arn"`
	Account string `xml:"GetCallerIdentityResult>Account"`
}

// checkLink has the API verify a link's signature, as it verifies any
// presigned request, and returns whose it is.
func checkLink(ctx context.Context, api local, l *link) (*identity, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.URL.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(LinkHeader, "signin")
	resp, err := api.Do(req)
	if err != nil {
		return nil, err
	}
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Code    string `xml:"Error>Code"`
			Message string `xml:"Error>Message"`
		}
		xml.Unmarshal(data, &e)
		return nil, fmt.Errorf("the sign-in link was refused: %s: %s", e.Code, e.Message)
	}
	var id identity
	if err := xml.Unmarshal(data, &id); err != nil || id.Arn == "" {
		return nil, fmt.Errorf("the sign-in link's identity could not be read")
	}
	return &id, nil
}

// SignInLink returns a console sign-in URL for whoever holds creds: what
// `skiff console` prints. endpoint is skiff's API URL.
func SignInLink(ctx context.Context, endpoint, region string, creds aws.Credentials, now time.Time) (string, error) {
	endpoint = strings.TrimSuffix(endpoint, "/")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Expires="+
		strconv.Itoa(int(LinkMaxAge/time.Second)), nil)
	if err != nil {
		return "", err
	}
	req.Header.Set(LinkHeader, "signin")
	sum := sha256.Sum256(nil)
	u, _, err := v4.NewSigner().PresignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "sts", region, now.UTC())
	if err != nil {
		return "", err
	}
	return endpoint + "/console/signin?token=" + url.QueryEscape(LinkPrefix+base64.RawURLEncoding.EncodeToString([]byte(u))), nil
}
