// Package ec2 serves the EC2 networking actions skiff implements
// (DescribeVpcs, DescribeSubnets, DescribeAvailabilityZones, Create/Delete
// Vpc and Subnet) over the EC2 query protocol: form-encoded requests, XML
// answers with lowerCamel names and <item> lists, and EC2's error shape.
// Names follow botocore's EC2 model (data/ec2/2016-11-15/service-2.json).
package ec2

import (
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"skiff.dev/skiff/internal/api/awserr"
	"skiff.dev/skiff/internal/network"
)

const ns = "http://ec2.amazonaws.com/doc/2016-11-15/"

// Handler serves EC2 for the caller's account.
type Handler struct {
	Network *network.Service
	Account func(r *http.Request) string
	Region  string
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		WriteError(w, awserr.New(http.StatusBadRequest, "InvalidParameterValue", "the request is not form-encoded: "+err.Error()))
		return
	}
	form, account := r.Form, h.Account(r)
	action := form.Get("Action")
	if _, err := h.Network.EnsureDefault(account); err != nil {
		WriteError(w, mapError(err))
		return
	}
	var result any
	var err error
	switch action {
	case "DescribeAvailabilityZones":
		result, err = h.describeZones(form)
	case "DescribeVpcs":
		result, err = h.describeVpcs(account, form)
	case "DescribeSubnets":
		result, err = h.describeSubnets(account, form)
	case "CreateVpc":
		var v *network.VPC
		if form.Get("CidrBlock") == "" {
			err = fmt.Errorf("%w: The request must contain the parameter CidrBlock", errMissing)
		} else if v, err = h.Network.CreateVpc(account, form.Get("CidrBlock"), tagSpec(form, "vpc")); err == nil {
			result = struct {
				Vpc vpcXML `xml:"vpc"`
			}{h.vpc(v)}
		}
	case "CreateSubnet":
		var sn *network.Subnet
		zone := firstNonEmpty(form.Get("AvailabilityZone"), form.Get("AvailabilityZoneId"))
		switch {
		case form.Get("VpcId") == "":
			err = fmt.Errorf("%w: The request must contain the parameter VpcId", errMissing)
		case form.Get("CidrBlock") == "":
			err = fmt.Errorf("%w: The request must contain the parameter CidrBlock", errMissing)
		default:
			if sn, err = h.Network.CreateSubnet(account, form.Get("VpcId"), form.Get("CidrBlock"), zone, tagSpec(form, "subnet")); err == nil {
				result = struct {
					Subnet subnetXML `xml:"subnet"`
				}{h.subnet(sn)}
			}
		}
	case "DeleteSubnet":
		if err = h.Network.DeleteSubnet(account, form.Get("SubnetId")); err == nil {
			result = struct {
				Return bool `xml:"return"`
			}{true}
		}
	case "DeleteVpc":
		if err = h.Network.DeleteVpc(account, form.Get("VpcId")); err == nil {
			result = struct {
				Return bool `xml:"return"`
			}{true}
		}
	default:
		WriteError(w, awserr.New(http.StatusBadRequest, "InvalidAction",
			fmt.Sprintf("The action %s is not valid for this web service: skiff implements DescribeVpcs, DescribeSubnets, DescribeAvailabilityZones, CreateVpc, CreateSubnet, DeleteSubnet and DeleteVpc", action)))
		return
	}
	if err != nil {
		e := mapError(err)
		if e.Code == "InvalidID.NotFound" {
			e.Code = map[string]string{"DescribeVpcs": "InvalidVpcID.NotFound", "DeleteVpc": "InvalidVpcID.NotFound",
				"CreateSubnet": "InvalidVpcID.NotFound"}[action]
			if e.Code == "" {
				e.Code = "InvalidSubnetID.NotFound"
			}
		}
		WriteError(w, e)
		return
	}
	write(w, action, result)
}

var errMissing = errors.New("missing parameter")

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// list reads a query-protocol list: Name.1, Name.2, ….
func list(form url.Values, name string) []string {
	var out []string
	for i := 1; ; i++ {
		v, ok := form[name+"."+strconv.Itoa(i)]
		if !ok {
			return out
		}
		out = append(out, v...)
	}
}

// filter is one Filter.N: a name and the values any of which may match.
type filter struct {
	name   string
	values []string
}

func filters(form url.Values) []filter {
	var out []filter
	for i := 1; ; i++ {
		p := "Filter." + strconv.Itoa(i)
		name, ok := form[p+".Name"]
		if !ok {
			return out
		}
		out = append(out, filter{name[0], list(form, p+".Value")})
	}
}

// match reports whether every filter has a value among the resource's
// values for that filter name (fields); unknown filter names are an error.
func match(fs []filter, fields map[string][]string, tags map[string]string) (bool, error) {
	for _, f := range fs {
		var have []string
		switch {
		case strings.HasPrefix(f.name, "tag:"):
			if v, ok := tags[strings.TrimPrefix(f.name, "tag:")]; ok {
				have = []string{v}
			}
		case f.name == "tag-key":
			for k := range tags {
				have = append(have, k)
			}
		default:
			var ok bool
			if have, ok = fields[f.name]; !ok {
				var names []string
				for n := range fields {
					names = append(names, n)
				}
				slices.Sort(names)
				return false, fmt.Errorf("%w: The filter '%s' is invalid; skiff supports %s, tag:KEY and tag-key", errInvalidFilter, f.name, strings.Join(names, ", "))
			}
		}
		if !slices.ContainsFunc(f.values, func(v string) bool { return slices.Contains(have, v) }) {
			return false, nil
		}
	}
	return true, nil
}

var errInvalidFilter = errors.New("invalid filter")

// tagSpec reads TagSpecification.N.Tag.M for a resource type.
func tagSpec(form url.Values, resource string) map[string]string {
	tags := map[string]string{}
	for i := 1; ; i++ {
		p := "TagSpecification." + strconv.Itoa(i)
		rt, ok := form[p+".ResourceType"]
		if !ok {
			break
		}
		if rt[0] != resource {
			continue
		}
		for j := 1; ; j++ {
			k, ok := form[p+".Tag."+strconv.Itoa(j)+".Key"]
			if !ok {
				break
			}
			tags[k[0]] = form.Get(p + ".Tag." + strconv.Itoa(j) + ".Value")
		}
	}
	if len(tags) == 0 {
		return nil
	}
	return tags
}

type tagXML struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

func tagsXML(tags map[string]string) []tagXML {
	out := []tagXML{}
	for k, v := range tags {
		out = append(out, tagXML{k, v})
	}
	slices.SortFunc(out, func(a, b tagXML) int { return strings.Compare(a.Key, b.Key) })
	return out
}

type vpcXML struct {
	VpcID            string         `xml:"vpcId"`
	OwnerID          string         `xml:"ownerId"`
	State            string         `xml:"state"`
	CidrBlock        string         `xml:"cidrBlock"`
	CidrAssociations []cidrAssocXML `xml:"cidrBlockAssociationSet>item"`
	DhcpOptionsID    string         `xml:"dhcpOptionsId"`
	InstanceTenancy  string         `xml:"instanceTenancy"`
	IsDefault        bool           `xml:"isDefault"`
	Tags             []tagXML       `xml:"tagSet>item"`
}

type cidrAssocXML struct {
	AssociationID string `xml:"associationId"`
	CidrBlock     string `xml:"cidrBlock"`
	State         string `xml:"cidrBlockState>state"`
}

func (h *Handler) vpc(v *network.VPC) vpcXML {
	return vpcXML{VpcID: v.ID, OwnerID: v.Account, State: v.State, CidrBlock: v.CidrBlock,
		CidrAssociations: []cidrAssocXML{{"vpc-cidr-assoc-" + strings.TrimPrefix(v.ID, "vpc-"), v.CidrBlock, "associated"}},
		DhcpOptionsID:    "default", InstanceTenancy: "default", IsDefault: v.IsDefault, Tags: tagsXML(v.Tags)}
}

type subnetXML struct {
	SubnetID            string   `xml:"subnetId"`
	SubnetArn           string   `xml:"subnetArn"`
	State               string   `xml:"state"`
	VpcID               string   `xml:"vpcId"`
	OwnerID             string   `xml:"ownerId"`
	CidrBlock           string   `xml:"cidrBlock"`
	AvailableIPs        int      `xml:"availableIpAddressCount"`
	AvailabilityZone    string   `xml:"availabilityZone"`
	AvailabilityZoneID  string   `xml:"availabilityZoneId"`
	DefaultForAz        bool     `xml:"defaultForAz"`
	MapPublicIPOnLaunch bool     `xml:"mapPublicIpOnLaunch"`
	Tags                []tagXML `xml:"tagSet>item"`
}

func (h *Handler) subnet(s *network.Subnet) subnetXML {
	return subnetXML{SubnetID: s.ID, SubnetArn: fmt.Sprintf("arn:aws:ec2:%s:%s:subnet/%s", h.Region, s.Account, s.ID),
		State: s.State, VpcID: s.VpcID, OwnerID: s.Account, CidrBlock: s.CidrBlock, AvailableIPs: s.AvailableIPs(),
		AvailabilityZone: s.AvailabilityZone(h.Region), AvailabilityZoneID: s.ZoneID(h.Region),
		DefaultForAz: s.DefaultForAz, MapPublicIPOnLaunch: s.MapPublicIPOnLaunch, Tags: tagsXML(s.Tags)}
}

func (h *Handler) describeVpcs(account string, form url.Values) (any, error) {
	vpcs, err := h.Network.Vpcs(account, list(form, "VpcId"))
	if err != nil {
		return nil, err
	}
	out := struct {
		Vpcs []vpcXML `xml:"vpcSet>item"`
	}{Vpcs: []vpcXML{}}
	for i := range vpcs {
		v := &vpcs[i]
		ok, err := match(filters(form), map[string][]string{
			"vpc-id": {v.ID}, "cidr": {v.CidrBlock}, "cidr-block-association.cidr-block": {v.CidrBlock},
			"is-default": {strconv.FormatBool(v.IsDefault)}, "isDefault": {strconv.FormatBool(v.IsDefault)},
			"state": {v.State}, "owner-id": {v.Account}, "dhcp-options-id": {"default"},
		}, v.Tags)
		if err != nil {
			return nil, err
		}
		if ok {
			out.Vpcs = append(out.Vpcs, h.vpc(v))
		}
	}
	return out, nil
}

func (h *Handler) describeSubnets(account string, form url.Values) (any, error) {
	subnets, err := h.Network.Subnets(account, list(form, "SubnetId"))
	if err != nil {
		return nil, err
	}
	out := struct {
		Subnets []subnetXML `xml:"subnetSet>item"`
	}{Subnets: []subnetXML{}}
	for i := range subnets {
		s := &subnets[i]
		def := strconv.FormatBool(s.DefaultForAz)
		ok, err := match(filters(form), map[string][]string{
			"subnet-id": {s.ID}, "vpc-id": {s.VpcID}, "vpcId": {s.VpcID}, "state": {s.State}, "owner-id": {s.Account},
			"availability-zone": {s.AvailabilityZone(h.Region)}, "availabilityZone": {s.AvailabilityZone(h.Region)},
			"availability-zone-id": {s.ZoneID(h.Region)}, "availabilityZoneId": {s.ZoneID(h.Region)},
			"cidr-block": {s.CidrBlock}, "cidr": {s.CidrBlock}, "cidrBlock": {s.CidrBlock},
			"default-for-az": {def}, "defaultForAz": {def},
		}, s.Tags)
		if err != nil {
			return nil, err
		}
		if ok {
			out.Subnets = append(out.Subnets, h.subnet(s))
		}
	}
	return out, nil
}

type zoneXML struct {
	ZoneName           string     `xml:"zoneName"`
	ZoneID             string     `xml:"zoneId"`
	State              string     `xml:"zoneState"`
	RegionName         string     `xml:"regionName"`
	ZoneType           string     `xml:"zoneType"`
	OptInStatus        string     `xml:"optInStatus"`
	GroupName          string     `xml:"groupName"`
	NetworkBorderGroup string     `xml:"networkBorderGroup"`
	Messages           []struct{} `xml:"messageSet>item"`
}

func (h *Handler) describeZones(form url.Values) (any, error) {
	names, ids := list(form, "ZoneName"), list(form, "ZoneId")
	out := struct {
		Zones []zoneXML `xml:"availabilityZoneInfo>item"`
	}{Zones: []zoneXML{}}
	for _, z := range network.Zones {
		name, id := h.Region+z, network.ZoneID(h.Region, z)
		if len(names) > 0 && !slices.Contains(names, name) || len(ids) > 0 && !slices.Contains(ids, id) {
			continue
		}
		ok, err := match(filters(form), map[string][]string{"zone-name": {name}, "zone-id": {id}, "state": {"available"},
			"region-name": {h.Region}, "zone-type": {"availability-zone"}, "group-name": {h.Region}}, nil)
		if err != nil {
			return nil, err
		}
		if ok {
			out.Zones = append(out.Zones, zoneXML{name, id, "available", h.Region, "availability-zone", "opt-in-not-required", h.Region, h.Region, nil})
		}
	}
	for _, n := range names {
		if !slices.Contains(network.ZoneNames(h.Region), n) {
			return nil, fmt.Errorf("%w: The zone '%s' does not exist; the zones are %s", network.ErrInvalid, n, strings.Join(network.ZoneNames(h.Region), ", "))
		}
	}
	return out, nil
}

func mapError(err error) *awserr.Error {
	msg := err.Error()
	if _, rest, ok := strings.Cut(msg, ": "); ok {
		msg = rest
	}
	code := "InvalidParameterValue"
	switch {
	case errors.Is(err, network.ErrNotFound):
		code = "InvalidID.NotFound" // made specific by the action
	case errors.Is(err, network.ErrRange):
		code = "InvalidVpc.Range"
		if strings.Contains(msg, "subnet") || strings.Contains(msg, "inside the VPC") {
			code = "InvalidSubnet.Range"
		}
	case errors.Is(err, network.ErrConflict):
		code = "InvalidSubnet.Conflict"
	case errors.Is(err, network.ErrDependency):
		code = "DependencyViolation"
	case errors.Is(err, network.ErrLimit):
		code = "VpcLimitExceeded"
	case errors.Is(err, errMissing):
		code = "MissingParameter"
	case errors.Is(err, errInvalidFilter):
		code = "InvalidParameterValue"
	case errors.Is(err, network.ErrInvalid):
	default:
		return awserr.New(http.StatusInternalServerError, "InternalError", "skiff could not complete the request; retry, and see the skiff serve log if it persists")
	}
	return awserr.New(http.StatusBadRequest, code, msg)
}

func write(w http.ResponseWriter, action string, result any) {
	// The result's fields are the response element's children, after requestId.
	var inner []byte
	if result != nil {
		b, err := xml.Marshal(struct {
			XMLName xml.Name `xml:"r"`
			Result  any
		}{Result: result})
		if err != nil {
			WriteError(w, awserr.New(http.StatusInternalServerError, "InternalError", "skiff could not render the response; see the skiff serve log"))
			return
		}
		inner = b[len("<r><Result>") : len(b)-len("</Result></r>")]
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "%s<%sResponse xmlns=%q><requestId>%s</requestId>%s</%sResponse>", xml.Header, action, ns, awserr.RequestID(), inner, action)
}

// WriteError writes an EC2 error: <Response><Errors><Error>….
func WriteError(w http.ResponseWriter, e *awserr.Error) {
	body := struct {
		XMLName xml.Name `xml:"Response"`
		Errors  struct {
			Error struct{ Code, Message string }
		}
		RequestID string
	}{RequestID: awserr.RequestID()}
	body.Errors.Error.Code, body.Errors.Error.Message = e.Code, e.Message
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(e.Status)
	w.Write([]byte(xml.Header))
	xml.NewEncoder(w).Encode(body)
}
