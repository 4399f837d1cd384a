package policy

import (
	"embed"
	"strings"
)

// managedFS holds the documents of the AWS managed policies, one managed/NAME.json each.
//
//go:embed managed/*.json
var managedFS embed.FS

// Managed is an AWS managed policy: arn:aws:iam::aws:policy + Path + Name.
type Managed struct {
	Name, Path, Description string
	VersionID               string // the default version, like "v1"
	Document                string // the JSON document of that version
}

// Arn returns the policy's ARN, like arn:aws:iam::aws:policy/AdministratorAccess.
func (m Managed) Arn() string { return "arn:aws:iam::aws:policy" + m.Path + m.Name }

// managedTable lists the managed policies the service knows, without their documents.
//
// The documents are the real ones, at the default version given here. They come from two public
// collections of every AWS managed policy as returned by iam get-policy-version:
//
//   - z0ph/MAMIP, policies/NAME (snapshot of 2025-02-22, commit de4971a4): the document as AWS
//     returns it, used where it holds the newest version;
//   - iann0036/iam-dataset, aws/managedpolicies/NAME.json, field "document" (snapshot of
//     2026-08-22, commit 2073fa52): newer, but normalised by the dataset (Statement and Allow
//     Action always lists, keys sorted), which does not change the meaning. Used for
//     ReadOnlyAccess, AmazonEKSClusterPolicy and AmazonEKS_CNI_Policy.
//
// Statement keys were reordered as AWS shows them (Sid, Effect, Action, Resource, Condition) and
// the JSON re-indented. Paths come from MAMIP's policies-list.json (all "/"), descriptions from the
// AWS managed policy reference (docs.aws.amazon.com/aws-managed-policy/latest/reference/NAME).
//
//	AdministratorAccess                  v1    MAMIP (2015-02-06)
//	ReadOnlyAccess                       v188  iam-dataset (2026-07-21)
//	AmazonEKSClusterPolicy               v10   iam-dataset (2026-02-12)
//	AmazonEKSWorkerNodePolicy            v3    MAMIP (2023-11-27), same in iam-dataset
//	AmazonEC2ContainerRegistryReadOnly   v3    MAMIP (2019-12-10), same in iam-dataset
//	AmazonEC2ContainerRegistryPowerUser  v3    MAMIP (2019-12-10), same in iam-dataset
//	AmazonEKS_CNI_Policy                 v6    iam-dataset (2026-03-04)
//	AmazonEKSServicePolicy               v7    MAMIP (2024-10-14), same in iam-dataset
//	AmazonEKSVPCResourceController       v1    MAMIP (2020-08-12), same in iam-dataset
//	AmazonEC2ContainerRegistryFullAccess v3    MAMIP (2020-12-05), same in iam-dataset
//	IAMReadOnlyAccess                    v4    MAMIP (2018-01-25), same in iam-dataset
//	IAMFullAccess                        v2    MAMIP (2019-06-21), same in iam-dataset
func managedTable() []Managed {
	return []Managed{
		{Name: "AdministratorAccess", Path: "/", VersionID: "v1",
			Description: "Provides full access to AWS services and resources."},
		{Name: "ReadOnlyAccess", Path: "/", VersionID: "v188",
			Description: "Provides read-only access to AWS services and resources."},
		{Name: "AmazonEKSClusterPolicy", Path: "/", VersionID: "v10",
			Description: "This policy provides Kubernetes the permissions it requires to manage resources on your behalf. Kubernetes requires Ec2:CreateTags permissions to place identifying information on EC2 resources including but not limited to Instances, Security Groups, and Elastic Network Interfaces."},
		{Name: "AmazonEKSWorkerNodePolicy", Path: "/", VersionID: "v3",
			Description: "This policy allows Amazon EKS worker nodes to connect to Amazon EKS Clusters."},
		{Name: "AmazonEC2ContainerRegistryReadOnly", Path: "/", VersionID: "v3",
			Description: "Provides read-only access to Amazon EC2 Container Registry repositories."},
		{Name: "AmazonEC2ContainerRegistryPowerUser", Path: "/", VersionID: "v3",
			Description: "Provides full access to Amazon EC2 Container Registry repositories, but does not allow repository deletion or policy changes."},
		{Name: "AmazonEKS_CNI_Policy", Path: "/", VersionID: "v6",
			Description: "This policy provides the Amazon VPC CNI Plugin (amazon-vpc-cni-k8s) the permissions it requires to modify the IP address configuration on your EKS worker nodes. This permission set allows the CNI to list, describe, and modify Elastic Network Interfaces on your behalf. More information on the AWS VPC CNI Plugin is available here: https://github.com/aws/amazon-vpc-cni-k8s"},
		{Name: "AmazonEKSServicePolicy", Path: "/", VersionID: "v7",
			Description: "This policy allows Amazon Elastic Container Service for Kubernetes to create and manage the necessary resources to operate EKS Clusters."},
		{Name: "AmazonEKSVPCResourceController", Path: "/", VersionID: "v1",
			Description: "Policy used by VPC Resource Controller to manage ENI and IPs for worker nodes."},
		{Name: "AmazonEC2ContainerRegistryFullAccess", Path: "/", VersionID: "v3",
			Description: "Provides administrative access to Amazon ECR resources"},
		{Name: "IAMReadOnlyAccess", Path: "/", VersionID: "v4",
			Description: "Provides read only access to IAM via the AWS Management Console."},
		{Name: "IAMFullAccess", Path: "/", VersionID: "v2",
			Description: "Provides full access to IAM via the AWS Management Console."},
	}
}

// ManagedPolicies returns the AWS managed policies the service knows, with their documents.
func ManagedPolicies() []Managed {
	list := managedTable()
	for i := range list {
		list[i].Document = managedDocument(list[i].Name)
	}
	return list
}

// ManagedPolicy returns the AWS managed policy with the given ARN
// (arn:aws:iam::aws:policy/PATH/NAME).
func ManagedPolicy(arn string) (Managed, bool) {
	if !strings.HasPrefix(arn, "arn:aws:iam::aws:policy/") {
		return Managed{}, false
	}
	for _, m := range managedTable() {
		if m.Arn() == arn {
			m.Document = managedDocument(m.Name)
			return m, true
		}
	}
	return Managed{}, false
}

func managedDocument(name string) string {
	b, err := managedFS.ReadFile("managed/" + name + ".json")
	if err != nil {
		panic("policy: managed policy document missing from the embedded files: " + err.Error())
	}
	return string(b)
}
