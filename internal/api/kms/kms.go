// Package kms serves the AWS KMS API (JSON 1.1 protocol: POST with
// X-Amz-Target TrentService.<Operation>) over each account's keys
// (internal/kms), so the stock aws CLI and the SDKs create and manage
// symmetric keys and aliases, encrypt, decrypt and make data keys. Shapes,
// operation and error names follow botocore's KMS model
// (data/kms/2014-11-01/service-2.json).
package kms

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"skiff.dev/skiff/internal/api/awserr"
	kmskeys "skiff.dev/skiff/internal/kms"
)

// TargetPrefix is the X-Amz-Target prefix of KMS' operations.
const TargetPrefix = "TrentService."

// Handler serves the KMS API.
type Handler struct {
	KMS *kmskeys.Service
	// Account resolves the caller's account ID from the request.
	Account func(r *http.Request) string
	Log     *slog.Logger
}

// call is one request: the caller's account and the JSON body.
type call struct {
	account string
	body    []byte
}

type operation func(h *Handler, c *call) (any, error)

var operations = map[string]operation{
	"CreateKey":                       (*Handler).createKey,
	"DescribeKey":                     (*Handler).describeKey,
	"ListKeys":                        (*Handler).listKeys,
	"CreateAlias":                     (*Handler).createAlias,
	"ListAliases":                     (*Handler).listAliases,
	"DeleteAlias":                     (*Handler).deleteAlias,
	"Encrypt":                         (*Handler).encrypt,
	"Decrypt":                         (*Handler).decrypt,
	"GenerateDataKey":                 (*Handler).generateDataKey,
	"GenerateDataKeyWithoutPlaintext": (*Handler).generateDataKeyWithoutPlaintext,
	"EnableKey":                       (*Handler).enableKey,
	"DisableKey":                      (*Handler).disableKey,
	"ScheduleKeyDeletion":             (*Handler).scheduleKeyDeletion,
	"CancelKeyDeletion":               (*Handler).cancelKeyDeletion,
	"TagResource":                     (*Handler).tagResource,
	"UntagResource":                   (*Handler).untagResource,
	"ListResourceTags":                (*Handler).listResourceTags,
	"EnableKeyRotation":               (*Handler).enableKeyRotation,
	"DisableKeyRotation":              (*Handler).disableKeyRotation,
	"GetKeyRotationStatus":            (*Handler).getKeyRotationStatus,
	"RotateKeyOnDemand":               (*Handler).rotateKeyOnDemand,
}

// operationNames are the names of the operations skiff implements, sorted.
func operationNames() []string {
	names := make([]string, 0, len(operations))
	for n := range operations {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	name, ok := strings.CutPrefix(target, TargetPrefix)
	op := operations[name]
	if r.Method != http.MethodPost || !ok || op == nil {
		awserr.WriteJSON11(w, awserr.New(http.StatusBadRequest, "UnknownOperationException", fmt.Sprintf(
			"%s %q is not a KMS operation skiff implements (POST with X-Amz-Target %sOPERATION); it implements %s",
			r.Method, target, TargetPrefix, strings.Join(operationNames(), ", "))))
		return
	}
	var body []byte
	if r.Body != nil {
		var err error
		if body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20)); err != nil {
			awserr.WriteJSON11(w, awserr.New(http.StatusBadRequest, "SerializationException", "read the request body: "+err.Error()))
			return
		}
	}
	out, err := op(h, &call{account: h.Account(r), body: body})
	if err != nil {
		awserr.WriteJSON11(w, h.exception(name, h.Account(r), err))
		return
	}
	awserr.WriteJSON11OK(w, out)
}

func (h *Handler) log() *slog.Logger {
	if h.Log == nil {
		return slog.Default()
	}
	return h.Log
}

// exceptions are the KMS exceptions of the service's error kinds.
var exceptions = []struct {
	Kind error
	Code string
}{
	{kmskeys.ErrNotFound, "NotFoundException"},
	{kmskeys.ErrInvalid, "ValidationException"},
	{kmskeys.ErrInvalidArn, "InvalidArnException"},
	{kmskeys.ErrDisabled, "DisabledException"},
	{kmskeys.ErrInvalidState, "KMSInvalidStateException"},
	{kmskeys.ErrInvalidCiphertext, "InvalidCiphertextException"},
	{kmskeys.ErrIncorrectKey, "IncorrectKeyException"},
	{kmskeys.ErrExists, "AlreadyExistsException"},
	{kmskeys.ErrInvalidAlias, "InvalidAliasNameException"},
	{kmskeys.ErrTag, "TagException"},
	{kmskeys.ErrLimit, "LimitExceededException"},
}

// exception maps an operation's error to its KMS exception (HTTP 400, as
// the model gives none of them another status); anything else is a
// KMSInternalException, logged.
func (h *Handler) exception(op, account string, err error) *awserr.Error {
	var ae *awserr.Error
	if errors.As(err, &ae) {
		return ae
	}
	for _, e := range exceptions {
		if errors.Is(err, e.Kind) {
			return awserr.New(http.StatusBadRequest, e.Code, strings.TrimPrefix(err.Error(), e.Kind.Error()+": "))
		}
	}
	h.log().Error("kms: "+op, "account", account, "err", err)
	return awserr.New(http.StatusInternalServerError, "KMSInternalException", "skiff could not complete the request; retry, and see the skiff serve log if it persists")
}

// decode reads the JSON body into v.
func (c *call) decode(v any) error {
	if len(c.body) == 0 {
		return nil
	}
	if err := json.Unmarshal(c.body, v); err != nil {
		return awserr.New(http.StatusBadRequest, "SerializationException", "the request body is not valid JSON for this operation: "+err.Error())
	}
	return nil
}

func validation(format string, args ...any) *awserr.Error {
	return awserr.New(http.StatusBadRequest, "ValidationException", fmt.Sprintf(format, args...))
}

func unsupported(format string, args ...any) *awserr.Error {
	return awserr.New(http.StatusBadRequest, "UnsupportedOperationException", fmt.Sprintf(format, args...))
}

// required fails for an absent required member.
func required(name, value string) error {
	if value == "" {
		return validation("1 validation error detected: Value null at '%s' failed to satisfy constraint: Member must not be null", name)
	}
	return nil
}

// enum checks a value of one of the model's enums (values[0] is what
// skiff supports): absent is fine, another of the enum is unsupported,
// anything else is invalid.
func enum(member, value string, values []string, why string) error {
	switch {
	case value == "" || value == values[0]:
		return nil
	case slices.Contains(values, value):
		return unsupported("%s %s is not supported by skiff: %s", member, value, why)
	default:
		return validation("1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: Member must satisfy enum value set: [%s]",
			value, strings.ToLower(member[:1])+member[1:], strings.Join(values, ", "))
	}
}

// Enums of the model, skiff's one supported value first.
var (
	keySpecs = []string{"SYMMETRIC_DEFAULT", "RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521",
		"ECC_SECG_P256K1", "HMAC_224", "HMAC_256", "HMAC_384", "HMAC_512", "SM2", "ML_DSA_44", "ML_DSA_65", "ML_DSA_87", "ECC_NIST_EDWARDS25519"}
	keyUsages  = []string{"ENCRYPT_DECRYPT", "SIGN_VERIFY", "GENERATE_VERIFY_MAC", "KEY_AGREEMENT"}
	origins    = []string{"AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE"}
	algorithms = []string{"SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "SM2PKE"}
)

const symmetricOnly = "skiff's keys are symmetric encryption keys (SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT: AES-256-GCM)"

// epoch is a JSON 1.1 timestamp: seconds since the epoch, with milliseconds.
func epoch(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }

// metadata is KMS' KeyMetadata shape.
func (h *Handler) metadata(k *kmskeys.Key) map[string]any {
	m := map[string]any{
		"AWSAccountId":          k.Account,
		"KeyId":                 k.ID,
		"Arn":                   k.Arn(h.KMS.Region),
		"CreationDate":          epoch(k.CreatedAt),
		"Enabled":               k.State == kmskeys.StateEnabled,
		"Description":           k.Description,
		"KeyUsage":              "ENCRYPT_DECRYPT",
		"KeyState":              k.State,
		"Origin":                "AWS_KMS",
		"KeyManager":            "CUSTOMER",
		"CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
		"KeySpec":               "SYMMETRIC_DEFAULT",
		"EncryptionAlgorithms":  []string{"SYMMETRIC_DEFAULT"},
		"MultiRegion":           false,
		"CurrentKeyMaterialId":  k.MaterialID(k.Current().Number),
	}
	if k.State == kmskeys.StatePendingDeletion {
		m["DeletionDate"] = epoch(k.DeletionDate)
		m["PendingDeletionWindowInDays"] = k.PendingWindowInDays
	}
	return m
}

// tag is KMS' Tag shape.
type tag struct {
	TagKey   string `json:"TagKey"`
	TagValue string `json:"TagValue"`
}

func tagMap(tags []tag) map[string]string {
	if len(tags) == 0 {
		return nil
	}
	out := map[string]string{}
	for _, t := range tags {
		out[t.TagKey] = t.TagValue
	}
	return out
}

type createKeyRequest struct {
	Policy                         string `json:"Policy"`
	Description                    string `json:"Description"`
	KeyUsage                       string `json:"KeyUsage"`
	CustomerMasterKeySpec          string `json:"CustomerMasterKeySpec"`
	KeySpec                        string `json:"KeySpec"`
	Origin                         string `json:"Origin"`
	CustomKeyStoreID               string `json:"CustomKeyStoreId"`
	BypassPolicyLockoutSafetyCheck bool   `json:"BypassPolicyLockoutSafetyCheck"`
	Tags                           []tag  `json:"Tags"`
	MultiRegion                    *bool  `json:"MultiRegion"`
	XksKeyID                       string `json:"XksKeyId"`
}

func (h *Handler) createKey(c *call) (any, error) {
	var req createKeyRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if req.KeySpec != "" && req.CustomerMasterKeySpec != "" && req.KeySpec != req.CustomerMasterKeySpec {
		return nil, validation("KeySpec %s and CustomerMasterKeySpec %s differ: give KeySpec alone (CustomerMasterKeySpec is its deprecated name)", req.KeySpec, req.CustomerMasterKeySpec)
	}
	for _, e := range []struct {
		member, value string
		values        []string
		why           string
	}{
		{"KeySpec", req.KeySpec, keySpecs, symmetricOnly + "; omit --key-spec"},
		{"CustomerMasterKeySpec", req.CustomerMasterKeySpec, keySpecs, symmetricOnly + "; omit --customer-master-key-spec"},
		{"KeyUsage", req.KeyUsage, keyUsages, symmetricOnly + "; omit --key-usage"},
		{"Origin", req.Origin, origins, "skiff makes its keys' material itself (AWS_KMS): no imported material, CloudHSM or external key stores"},
	} {
		if err := enum(e.member, e.value, e.values, e.why); err != nil {
			return nil, err
		}
	}
	switch {
	case req.CustomKeyStoreID != "" || req.XksKeyID != "":
		return nil, unsupported("custom key stores are not supported by skiff: omit --custom-key-store-id and --xks-key-id")
	case req.MultiRegion != nil && *req.MultiRegion:
		return nil, unsupported("multi-Region keys are not supported by skiff: one skiff is one Region; omit --multi-region")
	case req.Policy != "":
		return nil, unsupported("key policies are not supported by skiff: who may use a key is decided by the callers' IAM policies alone (kms:* actions on the key's ARN); omit --policy")
	}
	k, err := h.KMS.CreateKey(c.account, req.Description, tagMap(req.Tags))
	if err != nil {
		return nil, err
	}
	return map[string]any{"KeyMetadata": h.metadata(k)}, nil
}

// keyRequest is the request of operations that name a key and nothing else.
type keyRequest struct {
	KeyID       string   `json:"KeyId"`
	GrantTokens []string `json:"GrantTokens"`
}

func (c *call) keyID() (string, error) {
	var req keyRequest
	if err := c.decode(&req); err != nil {
		return "", err
	}
	if err := required("keyId", req.KeyID); err != nil {
		return "", err
	}
	return req.KeyID, grants(req.GrantTokens)
}

// grants refuses grant tokens: skiff has no grants.
func grants(tokens []string) error {
	if len(tokens) > 0 {
		return awserr.New(http.StatusBadRequest, "InvalidGrantTokenException", "skiff has no grants, so no grant token is valid: omit --grant-tokens")
	}
	return nil
}

func (h *Handler) describeKey(c *call) (any, error) {
	id, err := c.keyID()
	if err != nil {
		return nil, err
	}
	k, err := h.KMS.Describe(c.account, id)
	if err != nil {
		return nil, err
	}
	return map[string]any{"KeyMetadata": h.metadata(k)}, nil
}

// listRequest is the paging of the List operations.
type listRequest struct {
	KeyID  string `json:"KeyId"`
	Limit  *int   `json:"Limit"`
	Marker string `json:"Marker"`
}

// page returns the items (sorted by key) after the marker's key, at most
// Limit (1–1000; default 100), and adds Truncated and NextMarker to out.
func page[T any](req listRequest, items []T, key func(T) string, out map[string]any) ([]T, error) {
	limit := 100
	if req.Limit != nil {
		if *req.Limit < 1 || *req.Limit > 1000 {
			return nil, validation("1 validation error detected: Value '%d' at 'limit' failed to satisfy constraint: Member must have value between 1 and 1000", *req.Limit)
		}
		limit = *req.Limit
	}
	sort.SliceStable(items, func(i, j int) bool { return key(items[i]) < key(items[j]) })
	start := 0
	if req.Marker != "" {
		last, err := base64.RawURLEncoding.DecodeString(req.Marker)
		if err != nil {
			return nil, awserr.New(http.StatusBadRequest, "InvalidMarkerException", "Marker is not the NextMarker of a previous response of this operation")
		}
		start = sort.Search(len(items), func(i int) bool { return key(items[i]) > string(last) })
	}
	end := min(start+limit, len(items))
	out["Truncated"] = end < len(items)
	if end < len(items) {
		out["NextMarker"] = base64.RawURLEncoding.EncodeToString([]byte(key(items[end-1])))
	}
	return items[start:end], nil
}

func (h *Handler) listKeys(c *call) (any, error) {
	var req listRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	keys, err := h.KMS.List(c.account)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	keys, err = page(req, keys, func(k *kmskeys.Key) string { return k.ID }, out)
	if err != nil {
		return nil, err
	}
	entries := []map[string]string{}
	for _, k := range keys {
		entries = append(entries, map[string]string{"KeyId": k.ID, "KeyArn": k.Arn(h.KMS.Region)})
	}
	out["Keys"] = entries
	return out, nil
}

type aliasRequest struct {
	AliasName   string `json:"AliasName"`
	TargetKeyID string `json:"TargetKeyId"`
}

func (h *Handler) createAlias(c *call) (any, error) {
	var req aliasRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if err := required("aliasName", req.AliasName); err != nil {
		return nil, err
	}
	return map[string]any{}, h.KMS.CreateAlias(c.account, req.AliasName, req.TargetKeyID)
}

func (h *Handler) deleteAlias(c *call) (any, error) {
	var req aliasRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if err := required("aliasName", req.AliasName); err != nil {
		return nil, err
	}
	return map[string]any{}, h.KMS.DeleteAlias(c.account, req.AliasName)
}

func (h *Handler) listAliases(c *call) (any, error) {
	var req listRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	aliases, err := h.KMS.Aliases(c.account, req.KeyID)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	aliases, err = page(req, aliases, func(a *kmskeys.Alias) string { return a.Name }, out)
	if err != nil {
		return nil, err
	}
	entries := []map[string]any{}
	for _, a := range aliases {
		entries = append(entries, map[string]any{"AliasName": a.Name, "AliasArn": a.Arn(h.KMS.Region), "TargetKeyId": a.KeyID,
			"CreationDate": epoch(a.CreatedAt), "LastUpdatedDate": epoch(a.UpdatedAt)})
	}
	out["Aliases"] = entries
	return out, nil
}

// cryptoRequest is the request of Encrypt, Decrypt and the
// GenerateDataKey operations.
type cryptoRequest struct {
	KeyID               string            `json:"KeyId"`
	Plaintext           []byte            `json:"Plaintext"`
	CiphertextBlob      []byte            `json:"CiphertextBlob"`
	EncryptionContext   map[string]string `json:"EncryptionContext"`
	GrantTokens         []string          `json:"GrantTokens"`
	EncryptionAlgorithm string            `json:"EncryptionAlgorithm"`
	KeySpec             string            `json:"KeySpec"`
	NumberOfBytes       *int              `json:"NumberOfBytes"`
	Recipient           json.RawMessage   `json:"Recipient"`
	DryRun              bool              `json:"DryRun"`
}

// decodeCrypto reads and checks what every cryptographic operation takes.
func (c *call) decodeCrypto() (*cryptoRequest, error) {
	var req cryptoRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if err := grants(req.GrantTokens); err != nil {
		return nil, err
	}
	if req.EncryptionAlgorithm != "" && req.EncryptionAlgorithm != algorithms[0] {
		if slices.Contains(algorithms, req.EncryptionAlgorithm) {
			return nil, awserr.New(http.StatusBadRequest, "InvalidKeyUsageException", fmt.Sprintf(
				"EncryptionAlgorithm %s is not supported by skiff's keys: %s; omit --encryption-algorithm", req.EncryptionAlgorithm, symmetricOnly))
		}
		return nil, enum("EncryptionAlgorithm", req.EncryptionAlgorithm, algorithms, "")
	}
	if len(req.Recipient) > 0 && string(req.Recipient) != "null" {
		return nil, validation("Recipient (a Nitro Enclave's attestation) is not supported by skiff: omit --recipient")
	}
	return &req, nil
}

// dryRun answers a request with DryRun set that would have succeeded.
func dryRun(out any, err error, dry bool) (any, error) {
	if err == nil && dry {
		return nil, awserr.New(http.StatusBadRequest, "DryRunOperationException", "The request would have succeeded, but the DryRun option is set.")
	}
	return out, err
}

func (h *Handler) encrypt(c *call) (any, error) {
	req, err := c.decodeCrypto()
	if err != nil {
		return nil, err
	}
	if err := required("keyId", req.KeyID); err != nil {
		return nil, err
	}
	if req.Plaintext == nil {
		return nil, required("plaintext", "")
	}
	blob, k, err := h.KMS.Encrypt(c.account, req.KeyID, req.Plaintext, req.EncryptionContext)
	if err != nil {
		return nil, err
	}
	return dryRun(map[string]any{"CiphertextBlob": blob, "KeyId": k.Arn(h.KMS.Region), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}, nil, req.DryRun)
}

func (h *Handler) decrypt(c *call) (any, error) {
	req, err := c.decodeCrypto()
	if err != nil {
		return nil, err
	}
	if req.CiphertextBlob == nil {
		return nil, required("ciphertextBlob", "")
	}
	plaintext, k, version, err := h.KMS.Decrypt(c.account, req.KeyID, req.CiphertextBlob, req.EncryptionContext)
	if err != nil {
		return nil, err
	}
	return dryRun(map[string]any{"KeyId": k.Arn(h.KMS.Region), "Plaintext": plaintext, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT",
		"KeyMaterialId": k.MaterialID(version)}, nil, req.DryRun)
}

// dataKey makes a data key: KeySpec AES_256 or AES_128, or NumberOfBytes.
func (h *Handler) dataKey(c *call, withPlaintext bool) (any, error) {
	req, err := c.decodeCrypto()
	if err != nil {
		return nil, err
	}
	if err := required("keyId", req.KeyID); err != nil {
		return nil, err
	}
	n := 0
	switch {
	case req.KeySpec != "" && req.NumberOfBytes != nil:
		return nil, validation("KeySpec and NumberOfBytes are mutually exclusive: give one")
	case req.KeySpec == "AES_256":
		n = 32
	case req.KeySpec == "AES_128":
		n = 16
	case req.KeySpec != "":
		return nil, validation("1 validation error detected: Value '%s' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set: [AES_256, AES_128]", req.KeySpec)
	case req.NumberOfBytes != nil:
		n = *req.NumberOfBytes
	default:
		return nil, validation("Please specify either number of bytes or key spec.")
	}
	plaintext, blob, k, err := h.KMS.GenerateDataKey(c.account, req.KeyID, n, req.EncryptionContext)
	if err != nil {
		return nil, err
	}
	out := map[string]any{"CiphertextBlob": blob, "KeyId": k.Arn(h.KMS.Region), "KeyMaterialId": k.MaterialID(k.Current().Number)}
	if withPlaintext {
		out["Plaintext"] = plaintext
	} else {
		clear(plaintext)
	}
	return dryRun(out, nil, req.DryRun)
}

func (h *Handler) generateDataKey(c *call) (any, error) { return h.dataKey(c, true) }

func (h *Handler) generateDataKeyWithoutPlaintext(c *call) (any, error) { return h.dataKey(c, false) }

func (h *Handler) enableKey(c *call) (any, error)  { return h.setEnabled(c, true) }
func (h *Handler) disableKey(c *call) (any, error) { return h.setEnabled(c, false) }

func (h *Handler) setEnabled(c *call, enabled bool) (any, error) {
	id, err := c.keyID()
	if err != nil {
		return nil, err
	}
	_, err = h.KMS.SetEnabled(c.account, id, enabled)
	return map[string]any{}, err
}

func (h *Handler) scheduleKeyDeletion(c *call) (any, error) {
	var req struct {
		KeyID               string `json:"KeyId"`
		PendingWindowInDays *int   `json:"PendingWindowInDays"`
	}
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if err := required("keyId", req.KeyID); err != nil {
		return nil, err
	}
	days, err := optionalDays(req.PendingWindowInDays, "pendingWindowInDays", kmskeys.MinPendingWindow, kmskeys.MaxPendingWindow)
	if err != nil {
		return nil, err
	}
	k, err := h.KMS.ScheduleDeletion(c.account, req.KeyID, days)
	if err != nil {
		return nil, err
	}
	return map[string]any{"KeyId": k.Arn(h.KMS.Region), "DeletionDate": epoch(k.DeletionDate), "KeyState": k.State,
		"PendingWindowInDays": k.PendingWindowInDays}, nil
}

// optionalDays reads an optional number of days: 0 if absent (the
// service's default), refused if given as 0 (the service checks the rest).
func optionalDays(v *int, member string, lo, hi int) (int, error) {
	if v != nil && *v == 0 {
		return 0, validation("1 validation error detected: Value '0' at '%s' failed to satisfy constraint: Member must have value between %d and %d", member, lo, hi)
	}
	if v == nil {
		return 0, nil
	}
	return *v, nil
}

func (h *Handler) cancelKeyDeletion(c *call) (any, error) {
	id, err := c.keyID()
	if err != nil {
		return nil, err
	}
	k, err := h.KMS.CancelDeletion(c.account, id)
	if err != nil {
		return nil, err
	}
	return map[string]any{"KeyId": k.Arn(h.KMS.Region)}, nil
}

func (h *Handler) tagResource(c *call) (any, error) {
	var req struct {
		KeyID string `json:"KeyId"`
		Tags  []tag  `json:"Tags"`
	}
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if err := required("keyId", req.KeyID); err != nil {
		return nil, err
	}
	if req.Tags == nil {
		return nil, required("tags", "")
	}
	return map[string]any{}, h.KMS.Tag(c.account, req.KeyID, tagMap(req.Tags))
}

func (h *Handler) untagResource(c *call) (any, error) {
	var req struct {
		KeyID   string   `json:"KeyId"`
		TagKeys []string `json:"TagKeys"`
	}
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if err := required("keyId", req.KeyID); err != nil {
		return nil, err
	}
	if req.TagKeys == nil {
		return nil, required("tagKeys", "")
	}
	return map[string]any{}, h.KMS.Untag(c.account, req.KeyID, req.TagKeys)
}

func (h *Handler) listResourceTags(c *call) (any, error) {
	var req listRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if err := required("keyId", req.KeyID); err != nil {
		return nil, err
	}
	k, err := h.KMS.Describe(c.account, req.KeyID)
	if err != nil {
		return nil, err
	}
	tags := make([]tag, 0, len(k.Tags))
	for key, v := range k.Tags {
		tags = append(tags, tag{TagKey: key, TagValue: v})
	}
	out := map[string]any{}
	if tags, err = page(req, tags, func(t tag) string { return t.TagKey }, out); err != nil {
		return nil, err
	}
	out["Tags"] = tags
	return out, nil
}

func (h *Handler) enableKeyRotation(c *call) (any, error) {
	var req struct {
		KeyID                string `json:"KeyId"`
		RotationPeriodInDays *int   `json:"RotationPeriodInDays"`
	}
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if err := required("keyId", req.KeyID); err != nil {
		return nil, err
	}
	days, err := optionalDays(req.RotationPeriodInDays, "rotationPeriodInDays", kmskeys.MinRotationPeriod, kmskeys.MaxRotationPeriod)
	if err != nil {
		return nil, err
	}
	_, err = h.KMS.SetRotation(c.account, req.KeyID, true, days)
	return map[string]any{}, err
}

func (h *Handler) disableKeyRotation(c *call) (any, error) {
	id, err := c.keyID()
	if err != nil {
		return nil, err
	}
	_, err = h.KMS.SetRotation(c.account, id, false, 0)
	return map[string]any{}, err
}

func (h *Handler) getKeyRotationStatus(c *call) (any, error) {
	id, err := c.keyID()
	if err != nil {
		return nil, err
	}
	k, err := h.KMS.Describe(c.account, id)
	if err != nil {
		return nil, err
	}
	out := map[string]any{"KeyId": k.Arn(h.KMS.Region), "KeyRotationEnabled": k.RotationEnabled()}
	if k.RotationEnabled() {
		out["RotationPeriodInDays"] = k.RotationPeriodInDays
		out["NextRotationDate"] = epoch(k.NextRotation)
	}
	return out, nil
}

func (h *Handler) rotateKeyOnDemand(c *call) (any, error) {
	id, err := c.keyID()
	if err != nil {
		return nil, err
	}
	k, err := h.KMS.Rotate(c.account, id)
	if err != nil {
		return nil, err
	}
	return map[string]any{"KeyId": k.Arn(h.KMS.Region)}, nil
}

// Resolve finds a key of account for IAM authorization (an authz.Resolver
// for kind "key", named by key ID, key ARN, alias name or alias ARN): its
// ARN and tags.
func (h *Handler) Resolve(account, kind string, names ...string) (string, map[string]string, bool) {
	if kind != "key" || len(names) != 1 {
		return "", nil, false
	}
	return h.KMS.Resolve(account, names[0])
}
