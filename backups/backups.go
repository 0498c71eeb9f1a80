// Package backups declares what the stack's backups share: the images built
// from agent/ (the databases' and the agents'), the backup network, and the
// repository gateway, through which every tenant's agent reaches its own
// repository and no other.
//
// The gateway is rclone's restic server (`rclone serve restic
// --private-repos`) in front of the repository the operator configured: a
// directory on the Docker host, or an SFTP server. Each tenant logs in as
// itself and sees only <repository>/<stack>/<tenant>/; the gateway holds the
// repository's credentials and no tenant's encryption key, and each agent
// holds its own tenant's key and gateway login only. So no tenant's
// containers hold anything that reads or deletes another tenant's backups.
//
// Every secret is derived from the stack's backup key (contract.TenantSecret),
// so a tenant removed and added back, or a stack destroyed and brought up
// again with the same key, finds its backups readable.
package backups

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi-docker/sdk/v4/go/docker"
	"github.com/pulumi/pulumi-random/sdk/v4/go/random"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/polls-tenants/polls/contract"
	"github.com/polls-tenants/polls/platform"
	"github.com/polls-tenants/polls/spec"
)

// Args configures the stack's backups.
type Args struct {
	Backup spec.Backup
	Prefix string
	// Tenants are every tenant's name, each with its own repository.
	Tenants []string
	// AgentImage runs the gateway (it has rclone).
	AgentImage pulumi.StringInput
}

// Backups is what the tenants' backups share.
type Backups struct {
	// Key is the stack's backup key: polls:backupKey, or one generated and
	// kept in the stack's state. Secret.
	Key pulumi.StringOutput
	// Generated says the key is the program's, not the operator's.
	Generated bool
	// Network is the backup network, where agents reach the gateway and,
	// for copies, each other.
	Network pulumi.StringOutput
	// Gateway is the gateway container.
	Gateway *docker.Container
	// Slots is the volume every agent mounts at contract.SlotsMount: the
	// engine's base backup slots, which bound how many base backups run at
	// once (agent/backup.Slots).
	Slots pulumi.StringOutput
}

// New declares the backup network and the gateway.
func New(ctx *pulumi.Context, args Args, opts ...pulumi.ResourceOption) (*Backups, error) {
	b := &Backups{}
	if args.Backup.Key != "" {
		b.Key = pulumi.ToSecret(pulumi.String(args.Backup.Key)).(pulumi.StringOutput)
	} else {
		key, err := random.NewRandomPassword(ctx, "backup-key", &random.RandomPasswordArgs{
			Length: pulumi.Int(43), Special: pulumi.Bool(false),
		}, opts...)
		if err != nil {
			return nil, fmt.Errorf("backup key: %w", err)
		}
		b.Key = pulumi.ToSecret(key.Result).(pulumi.StringOutput)
		b.Generated = true
	}
	// Not internal: the gateway reaches an off-host repository through it.
	// Agents join it to reach the gateway, never a database.
	network, err := docker.NewNetwork(ctx, "backup", &docker.NetworkArgs{
		Name: pulumi.String(args.Prefix + "-backup"),
		Labels: docker.NetworkLabelArray{
			docker.NetworkLabelArgs{Label: pulumi.String(contract.LabelStack), Value: pulumi.String(args.Prefix)},
		},
	}, append(opts, platform.Named)...)
	if err != nil {
		return nil, fmt.Errorf("backup network: %w", err)
	}
	b.Network = network.Name
	// Lock files only: no tenant's data, no secret.
	slots, err := docker.NewVolume(ctx, "backup-slots", &docker.VolumeArgs{
		Name: pulumi.String(args.Prefix + "-backup-slots"),
		Labels: docker.VolumeLabelArray{
			docker.VolumeLabelArgs{Label: pulumi.String(contract.LabelStack), Value: pulumi.String(args.Prefix)},
		},
	}, append(opts, platform.Named)...)
	if err != nil {
		return nil, fmt.Errorf("backup slots volume: %w", err)
	}
	b.Slots = slots.Name

	logins, err := declareLogins(ctx, args, b.Key, opts)
	if err != nil {
		return nil, err
	}
	repo := args.Backup.Repository
	command := pulumi.StringArray{
		pulumi.String("serve"), pulumi.String("restic"), pulumi.String("--addr"), pulumi.String(":" + strconv.Itoa(contract.GatewayPort)),
		pulumi.String("--htpasswd"), pulumi.String(contract.GatewayLoginsDir + "/" + contract.GatewayHtpasswd), pulumi.String("--private-repos"),
		pulumi.String("--config"), pulumi.String("/dev/null"),
	}
	var uploads docker.ContainerUploadArray
	var volumes docker.ContainerVolumeArray
	switch repo.Kind {
	case spec.RepositorySFTP:
		// rclone's SFTP backend, configured on its command line; the key
		// and host keys are files. No shell on the server is needed
		// (internal-sftp), and none is used for hashes.
		//
		// A request the server cannot serve fails after one try and a
		// connection that is not made in 10 s, not after rclone's default
		// 10 tries of up to a minute each: restic already tries each
		// request 10 times, with backoff, and only then does the agent
		// see the failure and report the repository failing. With both
		// retrying, TestSwarm saw a stopped server reported after over
		// 4 minutes; the log waiting unsent was reported meanwhile.
		command = append(command, pulumi.String("--low-level-retries"), pulumi.String("1"), pulumi.String("--contimeout"), pulumi.String("10s"))
		command = append(command, pulumi.String(fmt.Sprintf(":sftp,host=%s,port=%d,user=%s,key_file=%s,known_hosts_file=%s,shell_type=none,disable_hashcheck=true:%s/%s",
			repo.Host, repo.Port, repo.User, contract.GatewaySSHKeyFile, contract.GatewayKnownHostsFile, repo.Path, args.Prefix)))
		uploads = append(uploads,
			docker.ContainerUploadArgs{File: pulumi.String(contract.GatewaySSHKeyFile), Content: pulumi.ToSecret(pulumi.String(strings.TrimSpace(repo.SSHKey) + "\n")).(pulumi.StringOutput)},
			docker.ContainerUploadArgs{File: pulumi.String(contract.GatewayKnownHostsFile), Content: pulumi.String(repo.KnownHosts + "\n")},
		)
	default:
		// A directory on the Docker host, one per stack.
		volumes = docker.ContainerVolumeArray{docker.ContainerVolumeArgs{
			HostPath: pulumi.String(repo.Path + "/" + args.Prefix), ContainerPath: pulumi.String(contract.GatewayRepository),
		}}
		command = append(command, pulumi.String(contract.GatewayRepository))
	}
	gateway, err := docker.NewContainer(ctx, "backup-gateway", &docker.ContainerArgs{
		Name:        pulumi.String(args.Prefix + "-backup-gateway"),
		Image:       args.AgentImage,
		Entrypoints: pulumi.StringArray{pulumi.String("rclone")},
		Command:     command,
		Uploads:     uploads,
		Volumes:     volumes,
		Mounts: docker.ContainerMountArray{docker.ContainerMountArgs{
			Type: pulumi.String("volume"), Source: logins.volume, Target: pulumi.String(contract.GatewayLoginsDir), ReadOnly: pulumi.Bool(true),
		}},
		// The host directory Docker creates is root's.
		User: pulumi.String("0:0"),
		NetworksAdvanced: docker.ContainerNetworksAdvancedArray{
			docker.ContainerNetworksAdvancedArgs{Name: b.Network, Aliases: pulumi.StringArray{pulumi.String(contract.GatewayAlias)}},
		},
		Restart: pulumi.String("unless-stopped"),
		Memory:  platform.Memory(256), MemorySwap: platform.Memory(256),
		Labels: docker.ContainerLabelArray{
			docker.ContainerLabelArgs{Label: pulumi.String(contract.LabelStack), Value: pulumi.String(args.Prefix)},
			docker.ContainerLabelArgs{Label: pulumi.String(contract.LabelRole), Value: pulumi.String("backup-gateway")},
		},
	}, append(opts, platform.Named, logins.installed)...)
	if err != nil {
		return nil, fmt.Errorf("backup gateway: %w", err)
	}
	b.Gateway = gateway
	return b, nil
}

// logins is the gateway's logins file, on a volume of its own.
type logins struct {
	volume pulumi.StringOutput
	// installed orders the gateway after the file is in place (a dependency
	// only: the gateway is never replaced for it), and fails its
	// registration, so `pulumi up`, when the installer failed.
	installed pulumi.ResourceOption
}

// declareLogins declares the gateway's logins (an htpasswd line per tenant)
// and the one-shot container that writes them to the logins volume. The
// gateway reads the file again when it changes (rclone's htpasswd
// support), so adding or removing a tenant replaces only the installer and
// leaves the gateway, and every agent's connection to it, as they are. A
// new tenant's agent that asks before its login is in place is refused
// and tries again 2 s later.
func declareLogins(ctx *pulumi.Context, args Args, key pulumi.StringOutput, opts []pulumi.ResourceOption) (*logins, error) {
	tenants := append([]string(nil), args.Tenants...)
	sort.Strings(tenants)
	htpasswd := key.ApplyT(func(key string) string {
		var lines []string
		for _, t := range tenants {
			lines = append(lines, contract.HtpasswdLine(t, contract.TenantSecret(key, "gateway", t)))
		}
		return strings.Join(lines, "\n") + "\n"
	}).(pulumi.StringOutput)
	labels := docker.VolumeLabelArray{
		docker.VolumeLabelArgs{Label: pulumi.String(contract.LabelStack), Value: pulumi.String(args.Prefix)},
	}
	volume, err := docker.NewVolume(ctx, "backup-logins", &docker.VolumeArgs{
		Name: pulumi.String(args.Prefix + "-backup-logins"), Labels: labels,
	}, append(opts, platform.Named)...)
	if err != nil {
		return nil, fmt.Errorf("backup gateway logins volume: %w", err)
	}
	// Renamed into place: the gateway never reads a file half written.
	const staged = "/run/secrets/htpasswd"
	file := contract.GatewayLoginsDir + "/" + contract.GatewayHtpasswd
	installer, err := docker.NewContainer(ctx, "backup-logins", platform.OneShot(&docker.ContainerArgs{
		Name:  pulumi.String(args.Prefix + "-backup-logins"),
		Image: args.AgentImage,
		Entrypoints: pulumi.StringArray{pulumi.String("sh"), pulumi.String("-ec"),
			pulumi.String(fmt.Sprintf("install -m 600 %s %s.new && mv -f %s.new %s", staged, file, file, file))},
		Uploads: docker.ContainerUploadArray{
			docker.ContainerUploadArgs{File: pulumi.String(staged), Content: pulumi.ToSecret(htpasswd).(pulumi.StringOutput)},
		},
		Mounts: docker.ContainerMountArray{docker.ContainerMountArgs{
			Type: pulumi.String("volume"), Source: volume.Name, Target: pulumi.String(contract.GatewayLoginsDir),
		}},
		User:        pulumi.String("0:0"),
		NetworkMode: pulumi.String("none"),
		Labels: docker.ContainerLabelArray{
			docker.ContainerLabelArgs{Label: pulumi.String(contract.LabelStack), Value: pulumi.String(args.Prefix)},
			docker.ContainerLabelArgs{Label: pulumi.String(contract.LabelRole), Value: pulumi.String("backup-logins")},
		},
	}), append(opts, platform.Named)...)
	if err != nil {
		return nil, fmt.Errorf("backup gateway logins: %w", err)
	}
	ok := platform.Succeeded(installer, "backup gateway logins (the gateway keeps the ones it had): their installer", "installed").
		ApplyT(func(string) []pulumi.Resource { return nil }).(pulumi.ResourceArrayOutput)
	return &logins{volume: volume.Name, installed: pulumi.DependsOnInputs(ok)}, nil
}
