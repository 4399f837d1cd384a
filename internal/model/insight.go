package model

import "time"

// Insight statuses and categories, as EKS names them.
const (
	InsightPassing = "PASSING"
	InsightWarning = "WARNING"
	InsightError   = "ERROR"
	InsightUnknown = "UNKNOWN"

	InsightUpgradeReadiness = "UPGRADE_READINESS"

	RefreshInProgress = "IN_PROGRESS"
	RefreshCompleted  = "COMPLETED"
	RefreshFailed     = "FAILED"
)

// Insight is the result of one of a cluster's checks (EKS' Insight shape).
type Insight struct {
	ID                string    `json:"id"`
	Name              string    `json:"name"`
	Category          string    `json:"category"`
	KubernetesVersion string    `json:"kubernetesVersion"`
	Description       string    `json:"description"`
	Recommendation    string    `json:"recommendation,omitempty"`
	Status            string    `json:"status"`
	Reason            string    `json:"reason"`
	LastRefresh       time.Time `json:"lastRefresh"`
	LastTransition    time.Time `json:"lastTransition"`
	// Resources are what the check found, each with its own status.
	Resources      []InsightResource `json:"resources,omitempty"`
	Deprecations   []Deprecation     `json:"deprecations,omitempty"`
	Addons         []AddonCompat     `json:"addons,omitempty"`
	AdditionalInfo map[string]string `json:"additionalInfo,omitempty"`
}

// InsightResource is one resource an insight is about.
type InsightResource struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
	URI    string `json:"uri,omitempty"` // Kubernetes resource URI, /api/v1/nodes/NAME
	Arn    string `json:"arn,omitempty"`
}

// Deprecation is a deprecated API in use and who uses it.
type Deprecation struct {
	Usage          string       `json:"usage"` // "/api/v1/endpoints"
	ReplacedWith   string       `json:"replacedWith,omitempty"`
	StopServing    string       `json:"stopServing,omitempty"`    // the Kubernetes version that removes it
	ReplacementFor string       `json:"replacementFor,omitempty"` // the version that serves the replacement
	Clients        []ClientStat `json:"clients,omitempty"`
}

// ClientStat is a client of a deprecated API, from the audit log.
type ClientStat struct {
	UserAgent string    `json:"userAgent"`
	Username  string    `json:"username,omitempty"`
	Requests  int       `json:"requests"`
	Last      time.Time `json:"last"`
}

// AddonCompat is an add-on and the versions of it that run on an insight's
// Kubernetes version.
type AddonCompat struct {
	Name               string   `json:"name"`
	CompatibleVersions []string `json:"compatibleVersions"`
}

// InsightsRefresh is the state of a cluster's last insights refresh.
type InsightsRefresh struct {
	Status  string    `json:"status"` // IN_PROGRESS, COMPLETED, FAILED
	Message string    `json:"message,omitempty"`
	Started time.Time `json:"started,omitzero"`
	Ended   time.Time `json:"ended,omitzero"`
}
