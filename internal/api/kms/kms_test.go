package kms

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	sdk "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"skiff.dev/skiff/internal/botocore"
	kmskeys "skiff.dev/skiff/internal/kms"
	"skiff.dev/skiff/internal/store"
)

const (
	acct  = "111111111111"
	other = "222222222222"
)

type fixture struct {
	t       *testing.T
	h       *Handler
	account string
	logs    *bytes.Buffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "skiff.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	root, err := kmskeys.OpenRootKey(filepath.Join(dir, "kms-root.key"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, account: acct, logs: &bytes.Buffer{}}
	log := slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.h = &Handler{KMS: &kmskeys.Service{Store: st, Root: root, Region: "us-east-1", Log: log}, Log: log,
		Account: func(*http.Request) string { return f.account }}
	return f
}

// call sends an operation as the aws CLI does; it returns the status and
// the decoded body.
func (f *fixture) call(op, body string) (int, map[string]any) {
	f.t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	req.Header.Set("X-Amz-Target", TargetPrefix+op)
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		f.t.Fatalf("%s: not JSON: %s", op, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/x-amz-json-1.1" {
		f.t.Errorf("%s: Content-Type %q", op, ct)
	}
	if rec.Code != 200 && rec.Header().Get("x-amzn-ErrorType") != out["__type"] {
		f.t.Errorf("%s: x-amzn-ErrorType %q, __type %v", op, rec.Header().Get("x-amzn-ErrorType"), out["__type"])
	}
	return rec.Code, out
}

// ok runs an operation that must succeed.
func (f *fixture) ok(op, body string) map[string]any {
	f.t.Helper()
	code, out := f.call(op, body)
	if code != 200 {
		f.t.Fatalf("%s %s: %d %v", op, body, code, out)
	}
	return out
}

// fails runs an operation that must fail with a 400 and code.
func (f *fixture) fails(op, body, code string) string {
	f.t.Helper()
	status, out := f.call(op, body)
	if status != 400 || out["__type"] != code {
		f.t.Errorf("%s %s: %d %v, want 400 %s", op, body, status, out, code)
	}
	msg, _ := out["message"].(string)
	return msg
}

func (f *fixture) createKey() (id, arn string) {
	f.t.Helper()
	md := f.ok("CreateKey", `{}`)["KeyMetadata"].(map[string]any)
	return md["KeyId"].(string), md["Arn"].(string)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestOperations: each operation as the CLI sends it, and what it answers.
func TestOperations(t *testing.T) {
	f := newFixture(t)
	md := f.ok("CreateKey", `{"Description":"etcd secrets","KeyUsage":"ENCRYPT_DECRYPT","KeySpec":"SYMMETRIC_DEFAULT","Tags":[{"TagKey":"team","TagValue":"a"}]}`)["KeyMetadata"].(map[string]any)
	id, arn := md["KeyId"].(string), md["Arn"].(string)
	for k, v := range map[string]any{"AWSAccountId": acct, "Arn": "arn:aws:kms:us-east-1:" + acct + ":key/" + id, "Enabled": true,
		"Description": "etcd secrets", "KeyUsage": "ENCRYPT_DECRYPT", "KeyState": "Enabled", "Origin": "AWS_KMS", "KeyManager": "CUSTOMER",
		"KeySpec": "SYMMETRIC_DEFAULT", "MultiRegion": false} {
		if md[k] != v {
			t.Errorf("KeyMetadata %s = %v, want %v", k, md[k], v)
		}
	}
	if _, ok := md["CreationDate"].(float64); !ok {
		t.Errorf("CreationDate = %v, want epoch seconds", md["CreationDate"])
	}
	f.ok("CreateAlias", `{"AliasName":"alias/etcd","TargetKeyId":"`+id+`"}`)
	for _, ref := range []string{id, arn, "alias/etcd", "arn:aws:kms:us-east-1:" + acct + ":alias/etcd"} {
		if got := f.ok("DescribeKey", `{"KeyId":"`+ref+`"}`)["KeyMetadata"].(map[string]any)["KeyId"]; got != id {
			t.Errorf("DescribeKey %s: %v", ref, got)
		}
	}
	aliases := f.ok("ListAliases", `{}`)["Aliases"].([]any)
	if len(aliases) != 1 || aliases[0].(map[string]any)["AliasArn"] != "arn:aws:kms:us-east-1:"+acct+":alias/etcd" ||
		aliases[0].(map[string]any)["TargetKeyId"] != id {
		t.Errorf("ListAliases = %v", aliases)
	}

	// Encrypt and decrypt, with and without a KeyId.
	enc := f.ok("Encrypt", `{"KeyId":"alias/etcd","Plaintext":"`+b64("hello")+`","EncryptionContext":{"b":"2","a":"1"}}`)
	if enc["KeyId"] != arn || enc["EncryptionAlgorithm"] != "SYMMETRIC_DEFAULT" {
		t.Errorf("Encrypt = %v", enc)
	}
	blob := enc["CiphertextBlob"].(string)
	dec := f.ok("Decrypt", `{"CiphertextBlob":"`+blob+`","EncryptionContext":{"a":"1","b":"2"}}`)
	if dec["Plaintext"] != b64("hello") || dec["KeyId"] != arn || dec["KeyMaterialId"] != md["CurrentKeyMaterialId"] {
		t.Errorf("Decrypt = %v", dec)
	}
	f.ok("Decrypt", `{"CiphertextBlob":"`+blob+`","KeyId":"alias/etcd","EncryptionContext":{"a":"1","b":"2"}}`)

	// Data keys.
	for _, tt := range []struct {
		op, body string
		n        int
	}{
		{"GenerateDataKey", `{"KeyId":"` + id + `","KeySpec":"AES_256"}`, 32},
		{"GenerateDataKey", `{"KeyId":"` + id + `","KeySpec":"AES_128"}`, 16},
		{"GenerateDataKey", `{"KeyId":"` + id + `","NumberOfBytes":64}`, 64},
		{"GenerateDataKeyWithoutPlaintext", `{"KeyId":"` + id + `","KeySpec":"AES_256"}`, 0},
	} {
		out := f.ok(tt.op, tt.body)
		pt, _ := base64.StdEncoding.DecodeString(fmt.Sprint(out["Plaintext"]))
		if _, has := out["Plaintext"]; len(pt) != tt.n || has != (tt.n > 0) || out["KeyId"] != arn {
			t.Errorf("%s %s: %d plaintext bytes, %v", tt.op, tt.body, len(pt), out)
		}
		dec := f.ok("Decrypt", `{"CiphertextBlob":"`+out["CiphertextBlob"].(string)+`"}`)
		if got, _ := base64.StdEncoding.DecodeString(dec["Plaintext"].(string)); tt.n > 0 && !bytes.Equal(got, pt) {
			t.Errorf("%s: the data key decrypts to another", tt.op)
		}
	}

	// Tags.
	f.ok("TagResource", `{"KeyId":"`+id+`","Tags":[{"TagKey":"env","TagValue":"prod"},{"TagKey":"team","TagValue":"b"}]}`)
	f.ok("UntagResource", `{"KeyId":"`+id+`","TagKeys":["env"]}`)
	tags := f.ok("ListResourceTags", `{"KeyId":"`+id+`"}`)
	if fmt.Sprint(tags["Tags"]) != "[map[TagKey:team TagValue:b]]" || tags["Truncated"] != false {
		t.Errorf("ListResourceTags = %v", tags)
	}

	// Rotation.
	if st := f.ok("GetKeyRotationStatus", `{"KeyId":"`+id+`"}`); st["KeyRotationEnabled"] != false || st["KeyId"] != arn {
		t.Errorf("GetKeyRotationStatus = %v", st)
	}
	f.ok("EnableKeyRotation", `{"KeyId":"`+id+`","RotationPeriodInDays":180}`)
	if st := f.ok("GetKeyRotationStatus", `{"KeyId":"`+id+`"}`); st["KeyRotationEnabled"] != true || st["RotationPeriodInDays"] != 180.0 || st["NextRotationDate"] == nil {
		t.Errorf("GetKeyRotationStatus = %v", st)
	}
	f.ok("DisableKeyRotation", `{"KeyId":"`+id+`"}`)
	if out := f.ok("RotateKeyOnDemand", `{"KeyId":"`+id+`"}`); out["KeyId"] != arn {
		t.Errorf("RotateKeyOnDemand = %v", out)
	}
	md2 := f.ok("DescribeKey", `{"KeyId":"`+id+`"}`)["KeyMetadata"].(map[string]any)
	if md2["CurrentKeyMaterialId"] == md["CurrentKeyMaterialId"] {
		t.Error("CurrentKeyMaterialId unchanged by a rotation")
	}
	if dec := f.ok("Decrypt", `{"CiphertextBlob":"`+blob+`","EncryptionContext":{"a":"1","b":"2"}}`); dec["KeyMaterialId"] != md["CurrentKeyMaterialId"] {
		t.Errorf("a ciphertext of before the rotation: %v", dec)
	}

	// States.
	f.ok("DisableKey", `{"KeyId":"`+id+`"}`)
	if md := f.ok("DescribeKey", `{"KeyId":"`+id+`"}`)["KeyMetadata"].(map[string]any); md["KeyState"] != "Disabled" || md["Enabled"] != false {
		t.Errorf("disabled: %v", md)
	}
	f.ok("EnableKey", `{"KeyId":"`+id+`"}`)
	del := f.ok("ScheduleKeyDeletion", `{"KeyId":"alias/etcd","PendingWindowInDays":7}`)
	if del["KeyId"] != arn || del["KeyState"] != "PendingDeletion" || del["PendingWindowInDays"] != 7.0 || del["DeletionDate"] == nil {
		t.Errorf("ScheduleKeyDeletion = %v", del)
	}
	if md := f.ok("DescribeKey", `{"KeyId":"`+id+`"}`)["KeyMetadata"].(map[string]any); md["DeletionDate"] == nil || md["PendingDeletionWindowInDays"] != 7.0 {
		t.Errorf("pending deletion: %v", md)
	}
	if out := f.ok("CancelKeyDeletion", `{"KeyId":"`+id+`"}`); out["KeyId"] != arn {
		t.Errorf("CancelKeyDeletion = %v", out)
	}
	f.ok("DeleteAlias", `{"AliasName":"alias/etcd"}`)
	if aliases := f.ok("ListAliases", `{"KeyId":"`+id+`"}`)["Aliases"].([]any); len(aliases) != 0 {
		t.Errorf("ListAliases after DeleteAlias = %v", aliases)
	}
}

// TestListPages: ListKeys pages with Limit and Marker as the CLI's
// paginator follows them.
func TestListPages(t *testing.T) {
	f := newFixture(t)
	var want []string
	for range 5 {
		id, _ := f.createKey()
		want = append(want, id)
	}
	slices.Sort(want)
	var got []string
	marker, pages := "", 0
	for {
		body := `{"Limit":2}`
		if marker != "" {
			body = `{"Limit":2,"Marker":"` + marker + `"}`
		}
		out := f.ok("ListKeys", body)
		for _, k := range out["Keys"].([]any) {
			got = append(got, k.(map[string]any)["KeyId"].(string))
		}
		pages++
		if out["Truncated"] != true {
			if _, has := out["NextMarker"]; has {
				t.Errorf("last page with a NextMarker: %v", out)
			}
			break
		}
		marker = out["NextMarker"].(string)
	}
	if !slices.Equal(got, want) || pages != 3 {
		t.Errorf("%d pages: %v, want %v", pages, got, want)
	}
}

// TestErrors: KMS' exception names and statuses for what is refused.
func TestErrors(t *testing.T) {
	f := newFixture(t)
	id, arn := f.createKey()
	disabled, _ := f.createKey()
	f.ok("DisableKey", `{"KeyId":"`+disabled+`"}`)
	pending, _ := f.createKey()
	f.ok("ScheduleKeyDeletion", `{"KeyId":"`+pending+`"}`)
	f.ok("CreateAlias", `{"AliasName":"alias/app","TargetKeyId":"`+id+`"}`)
	blob := f.ok("Encrypt", `{"KeyId":"`+id+`","Plaintext":"`+b64("x")+`","EncryptionContext":{"k":"v"}}`)["CiphertextBlob"].(string)
	raw, _ := base64.StdEncoding.DecodeString(blob)
	raw[len(raw)-3] ^= 0x80
	tampered := base64.StdEncoding.EncodeToString(raw)
	f.account = other
	theirID, theirArn := f.createKey()
	theirBlob := f.ok("Encrypt", `{"KeyId":"`+theirID+`","Plaintext":"`+b64("x")+`"}`)["CiphertextBlob"].(string)
	f.account = acct

	for _, tt := range []struct {
		op, body, code string
		message        string // a part of the message
	}{
		{"CreateKey", `{"KeySpec":"RSA_2048"}`, "UnsupportedOperationException", "KeySpec RSA_2048 is not supported"},
		{"CreateKey", `{"KeySpec":"HMAC_256","KeyUsage":"GENERATE_VERIFY_MAC"}`, "UnsupportedOperationException", "HMAC_256"},
		{"CreateKey", `{"CustomerMasterKeySpec":"ECC_NIST_P256"}`, "UnsupportedOperationException", "ECC_NIST_P256"},
		{"CreateKey", `{"KeyUsage":"SIGN_VERIFY"}`, "UnsupportedOperationException", "KeyUsage SIGN_VERIFY"},
		{"CreateKey", `{"Origin":"EXTERNAL"}`, "UnsupportedOperationException", "Origin EXTERNAL"},
		{"CreateKey", `{"MultiRegion":true}`, "UnsupportedOperationException", "multi-Region"},
		{"CreateKey", `{"Policy":"{}"}`, "UnsupportedOperationException", "key policies"},
		{"CreateKey", `{"KeySpec":"AES_256"}`, "ValidationException", "enum value set"},
		{"CreateKey", `{"KeySpec":"SYMMETRIC_DEFAULT","CustomerMasterKeySpec":"RSA_2048"}`, "ValidationException", "differ"},
		{"CreateKey", `{"Tags":[{"TagKey":"aws:x","TagValue":"y"}]}`, "TagException", "reserved"},
		{"CreateKey", `{"Description":`, "SerializationException", "not valid JSON"},
		{"DescribeKey", `{}`, "ValidationException", "keyId"},
		{"DescribeKey", `{"KeyId":"00000000-0000-4000-8000-000000000000"}`, "NotFoundException", "does not exist"},
		{"DescribeKey", `{"KeyId":"nope"}`, "NotFoundException", "Invalid keyId"},
		{"DescribeKey", `{"KeyId":"alias/nope"}`, "NotFoundException", "is not found"},
		{"DescribeKey", `{"KeyId":"arn:aws:kms:us-east-1:` + acct + `:grant/x"}`, "InvalidArnException", "Invalid arn"},
		{"DescribeKey", `{"KeyId":"` + theirID + `"}`, "NotFoundException", "does not exist"},
		{"DescribeKey", `{"KeyId":"` + theirArn + `"}`, "NotFoundException", "does not exist"},
		{"DescribeKey", `{"KeyId":"` + id + `","GrantTokens":["t"]}`, "InvalidGrantTokenException", "no grants"},
		{"CreateAlias", `{"AliasName":"alias/aws/ebs","TargetKeyId":"` + id + `"}`, "InvalidAliasNameException", "alias/aws/"},
		{"CreateAlias", `{"AliasName":"app","TargetKeyId":"` + id + `"}`, "InvalidAliasNameException", "must begin with alias/"},
		{"CreateAlias", `{"AliasName":"alias/app","TargetKeyId":"` + id + `"}`, "AlreadyExistsException", "already exists"},
		{"CreateAlias", `{"AliasName":"alias/new","TargetKeyId":"` + pending + `"}`, "KMSInvalidStateException", "pending deletion"},
		{"CreateAlias", `{"AliasName":"alias/new","TargetKeyId":"` + theirID + `"}`, "NotFoundException", "does not exist"},
		{"DeleteAlias", `{"AliasName":"alias/nope"}`, "NotFoundException", "is not found"},
		{"Encrypt", `{"KeyId":"` + disabled + `","Plaintext":"` + b64("x") + `"}`, "DisabledException", "is disabled"},
		{"Encrypt", `{"KeyId":"` + pending + `","Plaintext":"` + b64("x") + `"}`, "KMSInvalidStateException", "is pending deletion"},
		{"Encrypt", `{"KeyId":"` + id + `"}`, "ValidationException", "plaintext"},
		{"Encrypt", `{"KeyId":"` + id + `","Plaintext":""}`, "ValidationException", "plaintext"},
		{"Encrypt", `{"KeyId":"` + id + `","Plaintext":"` + base64.StdEncoding.EncodeToString(make([]byte, 4097)) + `"}`, "ValidationException", "4096"},
		{"Encrypt", `{"KeyId":"` + id + `","Plaintext":"not base64!"}`, "SerializationException", "not valid JSON"},
		{"Encrypt", `{"KeyId":"` + id + `","Plaintext":"` + b64("x") + `","EncryptionAlgorithm":"RSAES_OAEP_SHA_256"}`, "InvalidKeyUsageException", "RSAES_OAEP_SHA_256"},
		{"Encrypt", `{"KeyId":"` + id + `","Plaintext":"` + b64("x") + `","EncryptionAlgorithm":"AES"}`, "ValidationException", "enum value set"},
		{"Encrypt", `{"KeyId":"` + id + `","Plaintext":"` + b64("x") + `","DryRun":true}`, "DryRunOperationException", "would have succeeded"},
		{"Decrypt", `{"CiphertextBlob":"` + blob + `"}`, "InvalidCiphertextException", ""},
		{"Decrypt", `{"CiphertextBlob":"` + blob + `","EncryptionContext":{"k":"w"}}`, "InvalidCiphertextException", ""},
		{"Decrypt", `{"CiphertextBlob":"` + tampered + `","EncryptionContext":{"k":"v"}}`, "InvalidCiphertextException", ""},
		{"Decrypt", `{"CiphertextBlob":"` + theirBlob + `"}`, "InvalidCiphertextException", ""},
		{"Decrypt", `{"CiphertextBlob":"` + b64("not a ciphertext blob of skiff's at all") + `"}`, "InvalidCiphertextException", ""},
		{"Decrypt", `{"CiphertextBlob":"` + blob + `","KeyId":"` + disabled + `","EncryptionContext":{"k":"v"}}`, "IncorrectKeyException", "does not identify"},
		{"Decrypt", `{}`, "ValidationException", "ciphertextBlob"},
		{"GenerateDataKey", `{"KeyId":"` + id + `"}`, "ValidationException", "either number of bytes or key spec"},
		{"GenerateDataKey", `{"KeyId":"` + id + `","KeySpec":"AES_256","NumberOfBytes":32}`, "ValidationException", "mutually exclusive"},
		{"GenerateDataKey", `{"KeyId":"` + id + `","KeySpec":"AES_512"}`, "ValidationException", "enum value set"},
		{"GenerateDataKey", `{"KeyId":"` + id + `","NumberOfBytes":1025}`, "ValidationException", "between 1 and 1024"},
		{"GenerateDataKey", `{"KeyId":"` + disabled + `","KeySpec":"AES_256"}`, "DisabledException", "is disabled"},
		{"GenerateDataKeyWithoutPlaintext", `{"KeyId":"` + pending + `","KeySpec":"AES_256"}`, "KMSInvalidStateException", "pending deletion"},
		{"EnableKey", `{"KeyId":"` + pending + `"}`, "KMSInvalidStateException", "pending deletion"},
		{"DisableKey", `{"KeyId":"` + theirArn + `"}`, "NotFoundException", "does not exist"},
		{"ScheduleKeyDeletion", `{"KeyId":"` + id + `","PendingWindowInDays":6}`, "ValidationException", "between 7 and 30"},
		{"ScheduleKeyDeletion", `{"KeyId":"` + id + `","PendingWindowInDays":0}`, "ValidationException", "between 7 and 30"},
		{"ScheduleKeyDeletion", `{"KeyId":"` + id + `","PendingWindowInDays":31}`, "ValidationException", "between 7 and 30"},
		{"ScheduleKeyDeletion", `{"KeyId":"` + pending + `"}`, "KMSInvalidStateException", "pending deletion"},
		{"CancelKeyDeletion", `{"KeyId":"` + id + `"}`, "KMSInvalidStateException", "not pending deletion"},
		{"TagResource", `{"KeyId":"` + id + `","Tags":[{"TagKey":"","TagValue":"v"}]}`, "TagException", "1 to 128"},
		{"TagResource", `{"KeyId":"` + pending + `","Tags":[{"TagKey":"a","TagValue":"v"}]}`, "KMSInvalidStateException", "pending deletion"},
		{"TagResource", `{"KeyId":"` + id + `"}`, "ValidationException", "tags"},
		{"UntagResource", `{"KeyId":"` + id + `"}`, "ValidationException", "tagKeys"},
		{"EnableKeyRotation", `{"KeyId":"` + disabled + `"}`, "DisabledException", "is disabled"},
		{"EnableKeyRotation", `{"KeyId":"` + id + `","RotationPeriodInDays":30}`, "ValidationException", "between 90 and 2560"},
		{"RotateKeyOnDemand", `{"KeyId":"` + pending + `"}`, "KMSInvalidStateException", "pending deletion"},
		{"ListKeys", `{"Limit":0}`, "ValidationException", "between 1 and 1000"},
		{"ListKeys", `{"Marker":"%%%"}`, "InvalidMarkerException", "NextMarker"},
		{"Sign", `{}`, "UnknownOperationException", "ScheduleKeyDeletion"},
	} {
		if msg := f.fails(tt.op, tt.body, tt.code); !strings.Contains(msg, tt.message) {
			t.Errorf("%s %s: message %q, want one with %q", tt.op, tt.body, msg, tt.message)
		}
	}
	// The refusals changed nothing.
	if keys := f.ok("ListKeys", `{}`)["Keys"].([]any); len(keys) != 3 {
		t.Errorf("%d keys after the refusals", len(keys))
	}
	if md := f.ok("DescribeKey", `{"KeyId":"`+arn+`"}`)["KeyMetadata"].(map[string]any); md["KeyState"] != "Enabled" {
		t.Errorf("the key after the refusals: %v", md)
	}
}

// TestAccounts: another account sees none of an account's keys or
// aliases, and can use none of them.
func TestAccounts(t *testing.T) {
	f := newFixture(t)
	id, arn := f.createKey()
	f.ok("CreateAlias", `{"AliasName":"alias/mine","TargetKeyId":"`+id+`"}`)
	f.account = other
	if keys := f.ok("ListKeys", `{}`)["Keys"].([]any); len(keys) != 0 {
		t.Errorf("ListKeys of another account: %v", keys)
	}
	if aliases := f.ok("ListAliases", `{}`)["Aliases"].([]any); len(aliases) != 0 {
		t.Errorf("ListAliases of another account: %v", aliases)
	}
	for _, ref := range []string{id, arn, "alias/mine", "arn:aws:kms:us-east-1:" + acct + ":alias/mine"} {
		f.fails("Encrypt", `{"KeyId":"`+ref+`","Plaintext":"`+b64("x")+`"}`, "NotFoundException")
		f.fails("ScheduleKeyDeletion", `{"KeyId":"`+ref+`"}`, "NotFoundException")
	}
	f.fails("DeleteAlias", `{"AliasName":"alias/mine"}`, "NotFoundException")
	theirs, _ := f.createKey()
	f.ok("CreateAlias", `{"AliasName":"alias/mine","TargetKeyId":"`+theirs+`"}`)
}

// TestNoSecretsInLogs: what skiff logs while serving names no plaintext,
// data key or ciphertext.
func TestNoSecretsInLogs(t *testing.T) {
	f := newFixture(t)
	id, _ := f.createKey()
	f.ok("CreateAlias", `{"AliasName":"alias/a","TargetKeyId":"`+id+`"}`)
	secret := "the secret the logs must not show"
	blob := f.ok("Encrypt", `{"KeyId":"alias/a","Plaintext":"`+b64(secret)+`"}`)["CiphertextBlob"].(string)
	f.ok("Decrypt", `{"CiphertextBlob":"`+blob+`"}`)
	dk := f.ok("GenerateDataKey", `{"KeyId":"`+id+`","KeySpec":"AES_256"}`)
	f.ok("RotateKeyOnDemand", `{"KeyId":"`+id+`"}`)
	f.ok("ScheduleKeyDeletion", `{"KeyId":"`+id+`"}`)
	f.fails("Decrypt", `{"CiphertextBlob":"`+blob+`"}`, "KMSInvalidStateException")
	logs := f.logs.String()
	if !strings.Contains(logs, "kms: key created") {
		t.Fatalf("nothing logged: %q", logs)
	}
	for _, s := range []string{secret, b64(secret), blob, dk["Plaintext"].(string), dk["CiphertextBlob"].(string)} {
		if strings.Contains(logs, s) {
			t.Errorf("the logs show %q", s)
		}
	}
}

// kmsModel is botocore's KMS model, as much of it as the tests read.
type kmsModel struct {
	Metadata   map[string]any `json:"metadata"`
	Operations map[string]struct {
		Input  struct{ Shape string }   `json:"input"`
		Output struct{ Shape string }   `json:"output"`
		Errors []struct{ Shape string } `json:"errors"`
	} `json:"operations"`
	Shapes map[string]shape `json:"shapes"`
}

type shape struct {
	Type      string                            `json:"type"`
	Members   map[string]struct{ Shape string } `json:"members"`
	Member    struct{ Shape string }            `json:"member"`
	Exception bool                              `json:"exception"`
	Fault     bool                              `json:"fault"`
}

func readModel(t *testing.T) *kmsModel {
	t.Helper()
	data, err := botocore.Model("kms")
	if err != nil {
		t.Fatal(err)
	}
	var m kmsModel
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return &m
}

// conforms reports where v (a decoded JSON response) is not of the
// model's shape name: members it does not have, values of other types.
func (m *kmsModel) conforms(name, path string, v any) []string {
	s := m.Shapes[name]
	var out []string
	bad := func() []string { return []string{fmt.Sprintf("%s: %T is not a %s (%s)", path, v, s.Type, name)} }
	switch s.Type {
	case "structure":
		obj, ok := v.(map[string]any)
		if !ok {
			return bad()
		}
		for k, mv := range obj {
			mem, ok := s.Members[k]
			if !ok {
				out = append(out, fmt.Sprintf("%s.%s: not a member of %s", path, k, name))
				continue
			}
			out = append(out, m.conforms(mem.Shape, path+"."+k, mv)...)
		}
	case "list":
		list, ok := v.([]any)
		if !ok {
			return bad()
		}
		for i, e := range list {
			out = append(out, m.conforms(s.Member.Shape, fmt.Sprintf("%s[%d]", path, i), e)...)
		}
	case "string", "blob":
		if _, ok := v.(string); !ok {
			return bad()
		}
	case "integer", "long", "timestamp":
		if _, ok := v.(float64); !ok {
			return bad()
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return bad()
		}
	}
	return out
}

// TestBotocoreModel: the operations are KMS' (the protocol and target
// prefix too); every response is of its operation's output shape; every
// exception skiff answers is one of the model's, but ValidationException,
// which all AWS JSON services answer and no model lists.
func TestBotocoreModel(t *testing.T) {
	m := readModel(t)
	if fmt.Sprint(m.Metadata["targetPrefix"])+"." != TargetPrefix || m.Metadata["jsonVersion"] != "1.1" || m.Metadata["endpointPrefix"] != "kms" {
		t.Errorf("model metadata %v", m.Metadata)
	}
	for name := range operations {
		if _, ok := m.Operations[name]; !ok {
			t.Errorf("%s is not a KMS operation", name)
		}
	}
	codes := map[string]bool{"UnsupportedOperationException": true, "InvalidGrantTokenException": true, "InvalidKeyUsageException": true,
		"InvalidMarkerException": true, "DryRunOperationException": true, "KMSInternalException": true}
	for _, e := range exceptions {
		codes[e.Code] = true
	}
	for code := range codes {
		if s, ok := m.Shapes[code]; code != "ValidationException" && (!ok || !s.Exception || s.Members["message"].Shape == "") {
			t.Errorf("%s is not an exception of KMS' model", code)
		}
	}

	// Every operation once, and its response against the model.
	f := newFixture(t)
	id, _ := f.createKey()
	blob := f.ok("Encrypt", `{"KeyId":"`+id+`","Plaintext":"`+b64("x")+`"}`)["CiphertextBlob"].(string)
	k := `{"KeyId":"` + id + `"}`
	for _, tt := range []struct{ op, body string }{
		{"CreateKey", `{"Tags":[{"TagKey":"a","TagValue":"b"}]}`},
		{"DescribeKey", k},
		{"ListKeys", `{"Limit":1}`},
		{"CreateAlias", `{"AliasName":"alias/x","TargetKeyId":"` + id + `"}`},
		{"ListAliases", `{}`},
		{"Encrypt", `{"KeyId":"alias/x","Plaintext":"` + b64("x") + `"}`},
		{"Decrypt", `{"CiphertextBlob":"` + blob + `"}`},
		{"GenerateDataKey", `{"KeyId":"` + id + `","KeySpec":"AES_256"}`},
		{"GenerateDataKeyWithoutPlaintext", `{"KeyId":"` + id + `","NumberOfBytes":8}`},
		{"TagResource", `{"KeyId":"` + id + `","Tags":[{"TagKey":"a","TagValue":"b"}]}`},
		{"ListResourceTags", k},
		{"UntagResource", `{"KeyId":"` + id + `","TagKeys":["a"]}`},
		{"EnableKeyRotation", k},
		{"GetKeyRotationStatus", k},
		{"DisableKeyRotation", k},
		{"RotateKeyOnDemand", k},
		{"DisableKey", k},
		{"EnableKey", k},
		{"DeleteAlias", `{"AliasName":"alias/x"}`},
		{"ScheduleKeyDeletion", k},
		{"DescribeKey", k},
		{"CancelKeyDeletion", k},
	} {
		out := f.ok(tt.op, tt.body)
		op := m.Operations[tt.op]
		if op.Output.Shape == "" {
			if len(out) != 0 {
				t.Errorf("%s has no output, skiff answers %v", tt.op, out)
			}
			continue
		}
		for _, problem := range m.conforms(op.Output.Shape, tt.op, out) {
			t.Error(problem)
		}
	}
	for name := range operations {
		found := false
		for _, e := range m.Operations[name].Errors {
			found = found || e.Shape == "NotFoundException"
		}
		if name != "CreateKey" && name != "ListKeys" && !found {
			t.Errorf("%s: the model lists no NotFoundException", name)
		}
	}
}

// TestSDK: aws-sdk-go-v2's KMS client, as a program would use it, reads
// skiff's answers and errors.
func TestSDK(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(f.h)
	t.Cleanup(srv.Close)
	c := sdk.New(sdk.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")})
	ctx := context.Background()
	created, err := c.CreateKey(ctx, &sdk.CreateKeyInput{Description: aws.String("sdk"), Tags: []types.Tag{{TagKey: aws.String("a"), TagValue: aws.String("b")}}})
	if err != nil {
		t.Fatal(err)
	}
	md := created.KeyMetadata
	if md.KeyState != types.KeyStateEnabled || md.KeySpec != types.KeySpecSymmetricDefault || md.CreationDate == nil || md.CreationDate.IsZero() ||
		md.KeyUsage != types.KeyUsageTypeEncryptDecrypt || !md.Enabled {
		t.Errorf("CreateKey = %+v", md)
	}
	if _, err := c.CreateAlias(ctx, &sdk.CreateAliasInput{AliasName: aws.String("alias/sdk"), TargetKeyId: md.KeyId}); err != nil {
		t.Fatal(err)
	}
	ec := map[string]string{"purpose": "test"}
	enc, err := c.Encrypt(ctx, &sdk.EncryptInput{KeyId: aws.String("alias/sdk"), Plaintext: []byte("hello sdk"), EncryptionContext: ec})
	if err != nil || aws.ToString(enc.KeyId) != aws.ToString(md.Arn) {
		t.Fatalf("Encrypt: %+v, %v", enc, err)
	}
	dec, err := c.Decrypt(ctx, &sdk.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec})
	if err != nil || string(dec.Plaintext) != "hello sdk" || dec.EncryptionAlgorithm != types.EncryptionAlgorithmSpecSymmetricDefault {
		t.Fatalf("Decrypt: %+v, %v", dec, err)
	}
	dk, err := c.GenerateDataKey(ctx, &sdk.GenerateDataKeyInput{KeyId: md.KeyId, KeySpec: types.DataKeySpecAes256})
	if err != nil || len(dk.Plaintext) != 32 {
		t.Fatalf("GenerateDataKey: %v", err)
	}
	var ids []string
	for p := sdk.NewListKeysPaginator(c, &sdk.ListKeysInput{Limit: aws.Int32(1)}); p.HasMorePages(); {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range out.Keys {
			ids = append(ids, aws.ToString(k.KeyId))
		}
	}
	if len(ids) != 1 || ids[0] != aws.ToString(md.KeyId) {
		t.Errorf("ListKeys pages: %v", ids)
	}
	del, err := c.ScheduleKeyDeletion(ctx, &sdk.ScheduleKeyDeletionInput{KeyId: md.Arn, PendingWindowInDays: aws.Int32(7)})
	if err != nil || del.KeyState != types.KeyStatePendingDeletion || del.DeletionDate == nil {
		t.Fatalf("ScheduleKeyDeletion: %+v, %v", del, err)
	}

	// Errors arrive as the SDK's typed exceptions.
	_, err = c.Decrypt(ctx, &sdk.DecryptInput{CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec})
	var invalidState *types.KMSInvalidStateException
	if !errors.As(err, &invalidState) {
		t.Errorf("Decrypt with a key pending deletion: %T %v", err, err)
	}
	_, err = c.DescribeKey(ctx, &sdk.DescribeKeyInput{KeyId: aws.String("alias/none")})
	var notFound *types.NotFoundException
	if !errors.As(err, &notFound) || !strings.Contains(notFound.ErrorMessage(), "alias/none") {
		t.Errorf("DescribeKey of no key: %T %v", err, err)
	}
	_, err = c.CreateKey(ctx, &sdk.CreateKeyInput{KeySpec: types.KeySpecRsa2048})
	var unsupported *types.UnsupportedOperationException
	if !errors.As(err, &unsupported) {
		t.Errorf("CreateKey RSA_2048: %T %v", err, err)
	}
	_, err = c.Decrypt(ctx, &sdk.DecryptInput{CiphertextBlob: []byte("garbage garbage garbage garbage garbage garbage")})
	var invalid *types.InvalidCiphertextException
	if !errors.As(err, &invalid) {
		t.Errorf("Decrypt garbage: %T %v", err, err)
	}
}
