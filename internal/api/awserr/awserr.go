// Package awserr writes AWS-shaped responses and errors: the JSON form of
// the restJson1 protocols (EKS) with x-amzn-ErrorType and a request ID, and
// of the JSON 1.1 protocol (ECR) with __type.
package awserr

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"net/http"
)

// Error is an AWS error: HTTP status, exception name, message.
type Error struct {
	Status  int
	Code    string
	Message string
	Fields  map[string]string // extra members of the exception shape
}

// New returns an error.
func New(status int, code, message string) *Error {
	return &Error{Status: status, Code: code, Message: message}
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// RequestID returns a fresh request ID in AWS' format.
func RequestID() string {
	b := make([]byte, 16)
	rand.Read(b)
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// WriteJSON writes e as a restJson1 error.
func WriteJSON(w http.ResponseWriter, e *Error) {
	body := map[string]string{"message": e.Message}
	for k, v := range e.Fields {
		body[k] = v
	}
	w.Header().Set("x-amzn-ErrorType", e.Code)
	write(w, e.Status, "application/json", body)
}

// WriteOK writes v as a 200 JSON response.
func WriteOK(w http.ResponseWriter, v any) { write(w, http.StatusOK, "application/json", v) }

func write(w http.ResponseWriter, status int, contentType string, v any) {
	w.Header().Set("Content-Type", contentType)
	if w.Header().Get("x-amzn-RequestId") == "" {
		w.Header().Set("x-amzn-RequestId", RequestID())
	}
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// JSON11ContentType is the content type of the JSON 1.1 protocol (ECR).
const JSON11ContentType = "application/x-amz-json-1.1"

// WriteJSON11 writes e as a JSON 1.1 protocol error (ECR's):
// {"__type": CODE, "message": …}, which is what the SDKs read.
func WriteJSON11(w http.ResponseWriter, e *Error) {
	body := map[string]string{"__type": e.Code, "message": e.Message}
	for k, v := range e.Fields {
		body[k] = v
	}
	w.Header().Set("x-amzn-ErrorType", e.Code)
	write(w, e.Status, JSON11ContentType, body)
}

// WriteJSON11OK writes v as a 200 JSON 1.1 response.
func WriteJSON11OK(w http.ResponseWriter, v any) { write(w, http.StatusOK, JSON11ContentType, v) }

// WriteError writes an AWS query-protocol XML error.
func WriteQuery(w http.ResponseWriter, e *Error) {
	typ := "Sender"
	if e.Status >= 500 {
		typ = "Receiver"
	}
	body := struct {
		XMLName xml.Name `xml:"ErrorResponse"`
		Error   struct {
			Type, Code, Message string
		}
		RequestId string
	}{RequestId: RequestID()}
	body.Error.Type, body.Error.Code, body.Error.Message = typ, e.Code, e.Message
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(e.Status)
	w.Write([]byte(xml.Header))
	xml.NewEncoder(w).Encode(body)
}
