// Command kube is the multi-call binary of one Kubernetes release bundle: the
// unmodified upstream components, selected by the first argument (or by the
// name the binary is invoked as):
//
//	kube apiserver|controller-manager|scheduler|kubelet|proxy|kubectl|etcd [flags]
//
// kubernetes-1.36/main.go is a symlink to this file: both releases share one
// entry point, each module pins its own Kubernetes and etcd.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	_ "time/tzdata" // CronJob time zones, as upstream's binaries

	"go.etcd.io/etcd/server/v3/etcdmain"
	_ "k8s.io/client-go/plugin/pkg/client/auth"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	kubectl "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"
)

var commands = []string{"apiserver", "controller-manager", "scheduler", "kubelet", "proxy", "kubectl", "etcd"}

func main() {
	name := strings.TrimPrefix(filepath.Base(os.Args[0]), "kube-")
	args := os.Args[1:]
	if name == "kube" {
		if len(args) == 0 {
			fmt.Fprintf(os.Stderr, "usage: kube COMMAND [flags]\ncommands: %s\n", strings.Join(commands, ", "))
			os.Exit(2)
		}
		name, args = strings.TrimPrefix(args[0], "kube-"), args[1:]
	}
	// Each component parses os.Args[1:]; make it look as if it ran alone.
	os.Args = append([]string{name}, args...)
	switch name {
	case "apiserver":
		os.Exit(cli.Run(apiserver.NewAPIServerCommand()))
	case "controller-manager":
		os.Exit(cli.Run(controllermanager.NewControllerManagerCommand()))
	case "scheduler":
		os.Exit(cli.Run(scheduler.NewSchedulerCommand()))
	case "kubelet":
		os.Exit(cli.Run(kubelet.NewKubeletCommand(context.Background())))
	case "proxy":
		os.Exit(cli.Run(proxy.NewProxyCommand()))
	case "kubectl":
		logs.GlogSetter(kubectl.GetLogVerbosity(os.Args)) //nolint:errcheck
		if err := cli.RunNoErrOutput(kubectl.NewDefaultKubectlCommand()); err != nil {
			kubectlutil.CheckErr(err)
		}
	case "etcd":
		etcdmain.Main(os.Args)
	default:
		fmt.Fprintf(os.Stderr, "kube: unknown command %q; use one of: %s\n", name, strings.Join(commands, ", "))
		os.Exit(2)
	}
}
