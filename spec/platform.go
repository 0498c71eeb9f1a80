package spec

import (
	"regexp"
	"strings"
)

// MaxReplicas bounds a tenant's app replicas: more is a typo, not a plan.
const MaxReplicas = 100

// registryRef is a registry and repository path: host[:port][/path].
var registryRef = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*$`)

// platform checks polls:platform and the keys that belong to one platform
// only, and returns the registry's credentials. A key the chosen platform
// would ignore is an error: it says the operator expects something that
// would not happen. Empty is unset, and polls:subnetPool at its default is
// unset too: Pulumi passes the program Pulumi.yaml's defaults as values.
func (p *parser) platform(s Stack) *RegistryAuth {
	user, password := p.values["registryUsername"], p.values["registryPassword"]
	switch s.Platform {
	case PlatformDocker:
		for _, k := range []string{"registry", "registryUsername", "registryPassword"} {
			if strings.TrimSpace(p.values[k]) != "" {
				p.addf("polls:%s: used only with polls:platform swarm (the nodes pull the app image from the registry): remove it with `pulumi config rm polls:%s`, or set polls:platform swarm", k, k)
			}
		}
		for _, where := range p.swarmOnly {
			p.addf("%s applies to polls:platform swarm only: remove it, or set polls:platform swarm", where)
		}
		return nil
	case PlatformSwarm:
		if v, set := p.values["subnetPool"]; set && strings.TrimSpace(v) != DefaultSubnetPool {
			p.addf("polls:subnetPool: used only with polls:platform docker; on Swarm the cluster's address pool (`docker swarm init --default-addr-pool`) gives overlay networks their subnets: remove it with `pulumi config rm polls:subnetPool`")
		}
		switch {
		case s.Registry == "":
			p.addf("polls:registry: required with polls:platform swarm, as every node pulls the app image from it: set it, e.g. `pulumi config set polls:registry 10.0.0.5:5000/polls`")
		case !registryRef.MatchString(s.Registry) || len(s.Registry) > 200:
			p.addf("polls:registry: %q is not a registry and path: use host[:port][/path] in lower case, e.g. 10.0.0.5:5000/polls", s.Registry)
		case !strings.ContainsAny(registryHost(s.Registry), ".:") && registryHost(s.Registry) != "localhost":
			p.addf("polls:registry: %q does not start with a registry host (one with a '.' or a port, or localhost): Docker would read it as a user on the default registry; use e.g. 10.0.0.5:5000/%s", s.Registry, s.Registry)
		}
		switch {
		case user == "" && password == "":
			return nil
		case user == "":
			p.addf("polls:registryUsername: missing while polls:registryPassword is set: `pulumi config set polls:registryUsername <user>`, or remove the password")
		case password == "":
			p.addf("polls:registryPassword: missing while polls:registryUsername is set: `pulumi config set --secret polls:registryPassword <password>`, or remove the user")
		default:
			return &RegistryAuth{Username: user, Password: password}
		}
		return nil
	default:
		p.addf("polls:platform: %q is not a platform: use docker (containers on one Docker engine, the default) or swarm (services on a Docker Swarm cluster)", s.Platform)
		return nil
	}
}

// registryHost returns the registry's host[:port], without the path.
func registryHost(registry string) string { return strings.Split(registry, "/")[0] }

// RegistryHost returns the host[:port] of s.Registry, where images are
// pushed and from which credentials are sent.
func (s Stack) RegistryHost() string { return registryHost(s.Registry) }
