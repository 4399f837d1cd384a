package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"skiff.dev/skiff/internal/apitls"
)

// client talks to a skiff server's EKS, IAM and skiff APIs, signing every
// request with SigV4 and the credentials of the environment (as `skiff
// env` sets them, or as the aws CLI would find them in the environment).
type client struct {
	endpoint string
	region   string
	creds    aws.Credentials
	http     *http.Client
	err      error // of the client's set-up (an unreadable AWS_CA_BUNDLE)
}

func defaultEndpoint() string {
	for _, v := range []string{"SKIFF_ENDPOINT", "AWS_ENDPOINT_URL_EKS", "AWS_ENDPOINT_URL"} {
		if e := os.Getenv(v); e != "" {
			return e
		}
	}
	return "https://127.0.0.1:7443"
}

func newClient(endpoint string) *client {
	region := os.Getenv("AWS_REGION")
	if region == "" {
		region = os.Getenv("AWS_DEFAULT_REGION")
	}
	if region == "" {
		region = "us-east-1"
	}
	// AWS_CA_BUNDLE as the AWS CLI honours it: skiff env points it at
	// skiff's own CA.
	bundle := os.Getenv("AWS_CA_BUNDLE")
	if strings.HasPrefix(endpoint, "http://") {
		bundle = "" // no TLS: a bundle of another machine's paths is no error
	}
	tr, err := apitls.Transport(bundle)
	if err != nil {
		err = fmt.Errorf("AWS_CA_BUNDLE: %w", err)
	}
	return &client{endpoint: strings.TrimSuffix(endpoint, "/"), region: region, http: &http.Client{Timeout: 30 * time.Second, Transport: tr},
		creds: envCredentials(), err: err}
}

// envCredentials are the credentials of the environment, else of the
// [default] profile of $AWS_SHARED_CREDENTIALS_FILE (as the AWS CLI finds them).
func envCredentials() aws.Credentials {
	creds := aws.Credentials{AccessKeyID: os.Getenv("AWS_ACCESS_KEY_ID"), SecretAccessKey: os.Getenv("AWS_SECRET_ACCESS_KEY"),
		SessionToken: os.Getenv("AWS_SESSION_TOKEN")}
	if creds.AccessKeyID != "" {
		return creds
	}
	data, err := os.ReadFile(os.Getenv("AWS_SHARED_CREDENTIALS_FILE"))
	if err != nil {
		return creds
	}
	section := ""
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") {
			section = strings.Trim(line, "[]")
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section != "default" {
			continue
		}
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			creds.AccessKeyID = strings.TrimSpace(v)
		case "aws_secret_access_key":
			creds.SecretAccessKey = strings.TrimSpace(v)
		case "aws_session_token":
			creds.SessionToken = strings.TrimSpace(v)
		}
	}
	return creds
}

func (c *client) send(service, method, path, contentType string, body []byte) (*http.Response, []byte, error) {
	if c.err != nil {
		return nil, nil, c.err
	}
	if c.creds.AccessKeyID == "" {
		return nil, nil, fmt.Errorf("no credentials: run eval \"$(skiff env --data-dir DIR)\" first")
	}
	req, err := http.NewRequest(method, c.endpoint+path, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(context.Background(), c.creds, req, hex.EncodeToString(sum[:]), service, c.region, time.Now()); err != nil {
		return nil, nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("reach skiff at %s (is 'skiff serve' running? set --endpoint or SKIFF_ENDPOINT): %w", c.endpoint, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp, data, err
}

// do sends a JSON request to the EKS (or skiff) API and decodes a JSON
// answer into out (a *[]byte takes the raw body).
func (c *client) do(method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return err
		}
	}
	resp, data, err := c.send("eks", method, path, "application/json", body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Message string }
		json.Unmarshal(data, &e)
		if code := resp.Header.Get("x-amzn-ErrorType"); code != "" {
			return fmt.Errorf("%s: %s", code, e.Message)
		}
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, data)
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = data
		return nil
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// query calls a query-protocol action (IAM, EC2) and decodes the XML answer.
func (c *client) query(service, action string, params url.Values, out any) error {
	params.Set("Action", action)
	params.Set("Version", map[string]string{"iam": "2010-05-08", "sts": "2011-06-15", "ec2": "2016-11-15"}[service])
	resp, data, err := c.send(service, "POST", "/", "application/x-www-form-urlencoded; charset=utf-8", []byte(params.Encode()))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error  struct{ Code, Message string }
			Errors struct {
				Error struct{ Code, Message string }
			} // EC2's shape
		}
		xml.Unmarshal(data, &e)
		if e.Error.Code == "" {
			e.Error = e.Errors.Error
		}
		return fmt.Errorf("%s: %s", e.Error.Code, e.Error.Message)
	}
	if out != nil {
		return xml.Unmarshal(data, out)
	}
	return nil
}

// ensureClusterRole returns the ARN of the role skiff's CLI creates
// clusters with, creating the role on first use (as eksctl does).
func (c *client) ensureClusterRole() (string, error) {
	return c.ensureRole("skiff-cluster-role", "eks.amazonaws.com", "AmazonEKSClusterPolicy")
}

// ensureNodeRole returns the ARN of the role of the CLI's node groups.
func (c *client) ensureNodeRole() (string, error) {
	return c.ensureRole("skiff-node-role", "ec2.amazonaws.com",
		"AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryReadOnly", "AmazonEKS_CNI_Policy")
}

// ensureRole returns a role's ARN, creating it with a trust policy for
// service and the given AWS managed policies on first use.
func (c *client) ensureRole(name, service string, policies ...string) (string, error) {
	var out struct {
		Result struct {
			Role struct{ Arn string }
		} `xml:"GetRoleResult"`
	}
	err := c.query("iam", "GetRole", url.Values{"RoleName": {name}}, &out)
	if err != nil && strings.HasPrefix(err.Error(), "NoSuchEntity") {
		var created struct {
			Result struct {
				Role struct{ Arn string }
			} `xml:"CreateRoleResult"`
		}
		policy := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"` + service + `"},"Action":"sts:AssumeRole"}]}`
		if err := c.query("iam", "CreateRole", url.Values{"RoleName": {name}, "AssumeRolePolicyDocument": {policy}}, &created); err != nil {
			return "", err
		}
		out.Result.Role.Arn, err = created.Result.Role.Arn, nil
	}
	if err != nil {
		return "", err
	}
	// Attached every time (attaching is idempotent): roles made before
	// skiff enforced IAM policies get them too.
	for _, p := range policies {
		if err := c.query("iam", "AttachRolePolicy", url.Values{"RoleName": {name}, "PolicyArn": {"arn:aws:iam::aws:policy/" + p}}, nil); err != nil {
			return "", err
		}
	}
	return out.Result.Role.Arn, nil
}

// cluster is the part of EKS' Cluster shape the CLI shows.
type cluster struct {
	Name      string  `json:"name"`
	Version   string  `json:"version"`
	Status    string  `json:"status"`
	Endpoint  string  `json:"endpoint"`
	CreatedAt float64 `json:"createdAt"`
	CA        struct {
		Data string `json:"data"`
	} `json:"certificateAuthority"`
	Vpc struct {
		SubnetIDs []string `json:"subnetIds"`
	} `json:"resourcesVpcConfig"`
	Health struct {
		Issues []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"issues"`
	} `json:"health"`
}

func (c *client) describe(name string) (*cluster, error) {
	var out struct{ Cluster cluster }
	if err := c.do("GET", "/clusters/"+url.PathEscape(name), nil, &out); err != nil {
		return nil, err
	}
	return &out.Cluster, nil
}
