package ec2

import (
	"encoding/xml"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"skiff.dev/skiff/internal/network"
	"skiff.dev/skiff/internal/store"
)

func newHandler(t *testing.T) *Handler {
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &Handler{Network: &network.Service{Store: st, Region: "us-east-1"}, Region: "us-east-1",
		Account: func(*http.Request) string { return "123456789012" }}
}

func call(h http.Handler, form url.Values) *httptest.ResponseRecorder {
	req := httptest.NewRequest("POST", "/", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestDescribeSubnetsFilters(t *testing.T) {
	h := newHandler(t)
	rec := call(h, url.Values{"Action": {"DescribeSubnets"}, "Filter.1.Name": {"availability-zone"},
		"Filter.1.Value.1": {"us-east-1b"}, "Filter.1.Value.2": {"us-east-1c"}, "Filter.2.Name": {"default-for-az"}, "Filter.2.Value.1": {"true"}})
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var out struct {
		XMLName   xml.Name
		RequestID string `xml:"requestId"`
		Subnets   []struct {
			ID    string `xml:"subnetId"`
			Zone  string `xml:"availabilityZone"`
			ZID   string `xml:"availabilityZoneId"`
			Owner string `xml:"ownerId"`
			Free  int    `xml:"availableIpAddressCount"`
		} `xml:"subnetSet>item"`
	}
	if err := xml.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	if out.XMLName.Local != "DescribeSubnetsResponse" || out.RequestID == "" || len(out.Subnets) != 2 ||
		out.Subnets[0].Owner != "123456789012" || out.Subnets[0].Free != 4091 || !strings.HasPrefix(out.Subnets[0].ZID, "use1-az") {
		t.Errorf("DescribeSubnets = %+v\n%s", out, rec.Body)
	}
}

func TestErrors(t *testing.T) {
	h := newHandler(t)
	vpc := func() string {
		rec := call(h, url.Values{"Action": {"CreateVpc"}, "CidrBlock": {"10.0.0.0/16"}})
		var out struct {
			ID string `xml:"vpc>vpcId"`
		}
		xml.Unmarshal(rec.Body.Bytes(), &out)
		return out.ID
	}()
	if vpc == "" {
		t.Fatal("CreateVpc gave no vpcId")
	}
	call(h, url.Values{"Action": {"CreateSubnet"}, "VpcId": {vpc}, "CidrBlock": {"10.0.0.0/24"}})
	for _, tt := range []struct {
		form url.Values
		code string
	}{
		{url.Values{"Action": {"DescribeVpcs"}, "VpcId.1": {"vpc-0"}}, "InvalidVpcID.NotFound"},
		{url.Values{"Action": {"DescribeSubnets"}, "SubnetId.1": {"subnet-0"}}, "InvalidSubnetID.NotFound"},
		{url.Values{"Action": {"DeleteVpc"}, "VpcId": {"vpc-0"}}, "InvalidVpcID.NotFound"},
		{url.Values{"Action": {"DeleteSubnet"}, "SubnetId": {"subnet-0"}}, "InvalidSubnetID.NotFound"},
		{url.Values{"Action": {"CreateVpc"}, "CidrBlock": {"10.0.0.0/8"}}, "InvalidVpc.Range"},
		{url.Values{"Action": {"CreateVpc"}, "CidrBlock": {"nope"}}, "InvalidParameterValue"},
		{url.Values{"Action": {"CreateVpc"}}, "MissingParameter"},
		{url.Values{"Action": {"CreateSubnet"}, "VpcId": {vpc}, "CidrBlock": {"10.9.0.0/24"}}, "InvalidSubnet.Range"},
		{url.Values{"Action": {"CreateSubnet"}, "VpcId": {vpc}, "CidrBlock": {"10.0.0.0/25"}}, "InvalidSubnet.Conflict"},
		{url.Values{"Action": {"CreateSubnet"}, "VpcId": {"vpc-0"}, "CidrBlock": {"10.0.0.0/25"}}, "InvalidVpcID.NotFound"},
		{url.Values{"Action": {"DeleteVpc"}, "VpcId": {vpc}}, "DependencyViolation"},
		{url.Values{"Action": {"DescribeVpcs"}, "Filter.1.Name": {"color"}, "Filter.1.Value.1": {"red"}}, "InvalidParameterValue"},
		{url.Values{"Action": {"RunInstances"}}, "InvalidAction"},
	} {
		rec := call(h, tt.form)
		var out struct {
			Code string `xml:"Errors>Error>Code"`
		}
		xml.Unmarshal(rec.Body.Bytes(), &out)
		if rec.Code != 400 || out.Code != tt.code {
			t.Errorf("%v: %d %s, want 400 %s", tt.form, rec.Code, out.Code, tt.code)
		}
	}
}
