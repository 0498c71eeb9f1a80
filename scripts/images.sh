#!/usr/bin/env bash
#
# scripts/images.sh — build the project's container images locally, from
# Debian packages only.
#
# Why: the development/CI hosts for this project have no access to any
# container registry (nothing can be pulled, not even debian:bookworm), but
# they do reach Debian's apt mirror over plain HTTP.  So every image the
# project needs is built here from scratch:
#
#   polls-local/debian:bookworm   debootstrap --variant=minbase rootfs, imported
#                                 with `docker import` (stand-in for debian:bookworm)
#   polls-local/postgres:15       Debian postgresql-15, with an entrypoint that
#                                 honours the official postgres image's contract
#                                 (POSTGRES_USER/_DB/_PASSWORD[_FILE], PGDATA, ...)
#   polls-local/nginx:1           Debian nginx laid out like the official nginx image
#   polls-local/golang:1.26       Go build base: Go from the Go module proxy (module
#                                 golang.org/toolchain, pinned in golang/toolchain/),
#                                 fetched by Debian's golang-1.23 (bookworm-backports)
#   polls-local/static:bookworm   distroless-static-like runtime base: passwd/group
#                                 with nonroot (65532), CA bundle, zoneinfo; no shell
#   polls-local/prometheus:2.42   Debian prometheus laid out like prom/prometheus
#   polls-local/alertmanager:0.25 Debian prometheus-alertmanager laid out like
#                                 prom/alertmanager
#
# Dockerfiles (and entrypoints) live in scripts/images/<name>/.  Builds use the
# legacy builder (DOCKER_BUILDKIT=0: the docker CLI here has no buildx) with
# --network host, and run apt-get inside the build over plain HTTP.
#
# Caching / idempotency:
#   * the debootstrapped rootfs is kept as a tarball in the cache dir
#     (${POLLS_IMAGES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/polls-images}), so
#     re-importing the base never needs debootstrap again;
#   * the base image is skipped if it exists;
#   * every other image carries a label with a hash of its inputs (its
#     scripts/images/<name>/ files + the base image ID) and is skipped when that
#     label still matches; editing a Dockerfile or rebuilding the base therefore
#     rebuilds exactly what depends on it.  A second run takes seconds.
#
# Usage: scripts/images.sh [--force] [--refresh-rootfs] [NAME...]
#        scripts/images.sh --check      # exit 0 iff all seven images exist
#        scripts/images.sh --help
# NAME is one of: debian postgres nginx golang static prometheus alertmanager
# (default: all).
#   --force           rebuild NAMEs from scratch (docker build --no-cache); the
#                     base is re-imported (from the cached tarball) only when
#                     building all images or when "debian" is named
#   --refresh-rootfs  run debootstrap again (new tarball) and re-import the base
# Environment: POLLS_IMAGES_CACHE (cache dir), DEBIAN_MIRROR,
# DEBIAN_SECURITY_MIRROR (both plain-HTTP mirrors, baked into the base's apt
# sources; by default the host's own apt sources for bookworm and
# bookworm-security).
#
# The golang image fetches its toolchain through the host's Go module cache,
# served to the build by tools/modproxy: building it also needs Go on the host
# and, unless the cache has the toolchain already, the host's GOPROXY.
#
# Needs: root (debootstrap, chroot), a running docker engine, debootstrap, tar;
# Go for the golang image.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
REPO_ROOT="$(cd "${SCRIPT_DIR}/.." && pwd)"
readonly REPO_ROOT
readonly CONTEXT_ROOT="${SCRIPT_DIR}/images"
readonly CACHE_DIR="${POLLS_IMAGES_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/polls-images}"
readonly SUITE="bookworm"
# host_mirror SUITE prints the first URI the host's own apt sources give for
# SUITE (deb822 .sources files and one-line .list files alike), so no mirror
# is named here. The images fetch over plain HTTP: containers here fail
# HTTPS certificate checks.
host_mirror() {
	local suite="$1"
	{
		# deb822: a stanza's URIs apply to its Suites.
		awk -v want="${suite}" '
			/^[[:space:]]*$/ { if (uri != "" && hit) print uri; uri = ""; hit = 0; next }
			/^URIs:/ { uri = $2 }
			/^Suites:/ { for (i = 2; i <= NF; i++) if ($i == want) hit = 1 }
			END { if (uri != "" && hit) print uri }
		' /etc/apt/sources.list.d/*.sources 2>/dev/null
		# one-line: deb [options] URI SUITE COMPONENTS...
		cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | sed -E 's/\[[^]]*\]//' |
			awk -v want="${suite}" '$1 == "deb" && $3 == want { print $2 }'
	} | head -n 1 | sed -E 's#^https://#http://#; s#/+$##' || true
}
MIRROR="${DEBIAN_MIRROR:-$(host_mirror bookworm)}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-$(host_mirror bookworm-security)}"
readonly MIRROR SECURITY_MIRROR
# Extra packages in the base rootfs: the CA bundle, zoneinfo and /etc/services
# are also what the static image copies out of the base.
readonly BASE_INCLUDE="ca-certificates,tzdata,netbase"
readonly ROOTFS_TAR="${CACHE_DIR}/debian-${SUITE}-minbase.tar"
readonly LABEL_KEY="org.polls-tenants.images.input"
readonly ALL_NAMES=(debian postgres nginx golang static prometheus alertmanager)

export DOCKER_BUILDKIT=0

FORCE=0
FORCE_BASE=0
REFRESH_ROOTFS=0
CHECK=0
WORK_DIR=""
SKIPPED=0
MODPROXY_PID=""
MODPROXY_URL=""

usage() {
	sed -n '/^# Usage:/,/^# sources)/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

log() {
	printf '[images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

die() {
	log "error: $*"
	exit 1
}

image_ref() {
	case "$1" in
		debian) echo "polls-local/debian:bookworm" ;;
		postgres) echo "polls-local/postgres:15" ;;
		nginx) echo "polls-local/nginx:1" ;;
		golang) echo "polls-local/golang:1.26" ;;
		static) echo "polls-local/static:bookworm" ;;
		prometheus) echo "polls-local/prometheus:2.42" ;;
		alertmanager) echo "polls-local/alertmanager:0.25" ;;
		*) return 1 ;;
	esac
}

image_exists() {
	docker image inspect "$1" >/dev/null 2>&1
}

image_label() {
	docker image inspect --format "{{ index .Config.Labels \"${LABEL_KEY}\" }}" "$1" 2>/dev/null || true
}

image_id() {
	docker image inspect --format '{{ .Id }}' "$1"
}

# input_hash DIR EXTRA... — hash of every file under DIR (path + content) plus
# the extra strings (e.g. the parent image ID).
input_hash() {
	local dir="$1"
	shift
	{
		printf '%s\n' "$@"
		(cd "${dir}" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
	} | sha256sum | cut -d' ' -f1
}

elapsed() {
	local start="$1"
	echo "$((SECONDS - start))s"
}

cleanup() {
	if [[ -n "${MODPROXY_PID}" ]]; then
		kill "${MODPROXY_PID}" 2>/dev/null || true
		wait "${MODPROXY_PID}" 2>/dev/null || true
	fi
	[[ -n "${WORK_DIR}" && -d "${WORK_DIR}" ]] || return 0
	# debootstrap mounts /proc and /sys inside the target; never rm -rf into
	# them if it died half-way.
	local mnt
	while read -r mnt; do
		umount -l "${mnt}" 2>/dev/null || true
	done < <(awk -v d="${WORK_DIR}/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r)
	rm -rf --one-file-system "${WORK_DIR}"
}

# --- base rootfs -------------------------------------------------------------

configure_rootfs() {
	local root="$1"

	rm -f "${root}/etc/apt/sources.list"
	cat >"${root}/etc/apt/sources.list.d/debian.sources" <<-EOF
		Types: deb
		URIs: ${MIRROR}
		Suites: ${SUITE} ${SUITE}-updates ${SUITE}-backports
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

		Types: deb
		URIs: ${SECURITY_MIRROR}
		Suites: ${SUITE}-security
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
	EOF

	# The same container tweaks the official debian image gets (debuerreotype).
	cat >"${root}/usr/sbin/policy-rc.d" <<-'EOF'
		#!/bin/sh
		# never start services while building images
		exit 101
	EOF
	chmod 0755 "${root}/usr/sbin/policy-rc.d"
	cat >"${root}/etc/apt/apt.conf.d/docker-clean" <<-'EOF'
		DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
		APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
		Dir::Cache::pkgcache "";
		Dir::Cache::srcpkgcache "";
	EOF
	echo 'Acquire::Languages "none";' >"${root}/etc/apt/apt.conf.d/docker-no-languages"
	echo 'Acquire::GzipIndexes "true";' >"${root}/etc/apt/apt.conf.d/docker-gzip-indexes"
	echo 'Apt::AutoRemove::SuggestsImportant "false";' >"${root}/etc/apt/apt.conf.d/docker-autoremove-suggests"
	echo 'force-unsafe-io' >"${root}/etc/dpkg/dpkg.cfg.d/docker-apt-speedup"

	# Drop host leftovers and caches; docker provides hostname/resolv.conf.
	rm -rf "${root}"/var/cache/apt/archives/*.deb "${root}"/var/cache/apt/*.bin \
		"${root}"/var/lib/apt/lists/* "${root}"/tmp/* "${root}"/var/tmp/*
	mkdir -p "${root}/var/lib/apt/lists/partial"
	: >"${root}/etc/resolv.conf"
	: >"${root}/etc/hostname"
	: >"${root}/etc/machine-id"
	find "${root}/var/log" -type f -exec truncate -s 0 {} +
}

ensure_rootfs_tar() {
	if [[ -s "${ROOTFS_TAR}" && "${REFRESH_ROOTFS}" -eq 0 ]]; then
		log "rootfs: using cached ${ROOTFS_TAR}"
		return 0
	fi
	command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install -y debootstrap)"
	[[ -n "${MIRROR}" && -n "${SECURITY_MIRROR}" ]] ||
		die "no Debian mirror for bookworm and bookworm-security in the host's apt sources: set DEBIAN_MIRROR and DEBIAN_SECURITY_MIRROR"
	[[ "$(id -u)" -eq 0 ]] || die "debootstrap needs root"

	local start="${SECONDS}" root="${WORK_DIR}/rootfs"
	log "rootfs: debootstrap --variant=minbase ${SUITE} from ${MIRROR} (takes a few minutes)"
	if ! debootstrap --variant=minbase --include="${BASE_INCLUDE}" \
		"${SUITE}" "${root}" "${MIRROR}" >"${WORK_DIR}/debootstrap.log" 2>&1; then
		tail -n 30 "${WORK_DIR}/debootstrap.log" >&2
		die "debootstrap failed"
	fi
	configure_rootfs "${root}"
	tar --numeric-owner -C "${root}" -cf "${ROOTFS_TAR}.tmp" .
	mv -f "${ROOTFS_TAR}.tmp" "${ROOTFS_TAR}"
	rm -rf --one-file-system "${root}"
	log "rootfs: cached $(du -h "${ROOTFS_TAR}" | cut -f1) tarball in $(elapsed "${start}")"
}

# --- Go module proxy ---------------------------------------------------------

# start_module_proxy puts the golang image's pinned toolchain into the host's
# Go module cache, then serves the cache as a GOPROXY on loopback (the build
# runs with --network host) and sets MODPROXY_URL; cleanup stops it.
start_module_proxy() {
	[[ -z "${MODPROXY_URL}" ]] || return 0
	command -v go >/dev/null ||
		die "go not found: the golang image's toolchain comes through the host's Go module cache (install Go)"
	log "golang: go mod download golang.org/toolchain (into the host's module cache)"
	(cd "${CONTEXT_ROOT}/golang/toolchain" && GOFLAGS=-mod=readonly go mod download golang.org/toolchain) ||
		die "go mod download golang.org/toolchain failed (see above; the host's GOPROXY must serve it)"
	(cd "${REPO_ROOT}" && go build -o "${WORK_DIR}/modproxy" ./tools/modproxy) ||
		die "go build ./tools/modproxy failed"
	"${WORK_DIR}/modproxy" -addr 127.0.0.1:0 >"${WORK_DIR}/modproxy.out" 2>"${WORK_DIR}/modproxy.log" &
	MODPROXY_PID=$!
	local i
	for ((i = 0; i < 100; i++)); do
		MODPROXY_URL="$(sed -n 's/^listening on //p' "${WORK_DIR}/modproxy.out")"
		[[ -z "${MODPROXY_URL}" ]] || return 0
		kill -0 "${MODPROXY_PID}" 2>/dev/null || break
		sleep 0.1
	done
	cat "${WORK_DIR}/modproxy.log" >&2
	die "tools/modproxy did not start"
}

# --- images ------------------------------------------------------------------

build_debian() {
	local ref
	ref="$(image_ref debian)"
	# --force re-imports the base only when it was asked for (explicitly or by
	# building everything): a new base ID makes every other image rebuild.
	if image_exists "${ref}" && [[ "${FORCE_BASE}" -eq 0 && "${REFRESH_ROOTFS}" -eq 0 ]]; then
		log "${ref}: exists, skipped"
		SKIPPED=1
		return 0
	fi
	ensure_rootfs_tar
	docker import \
		--change "LABEL ${LABEL_KEY}=$(stat -c '%s-%Y' "${ROOTFS_TAR}")" \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'CMD ["bash"]' \
		"${ROOTFS_TAR}" "${ref}" >/dev/null
}

# Images built from scripts/images/<name>/Dockerfile on top of the base.
build_dockerfile() {
	local name="$1" ref dir hash
	ref="$(image_ref "${name}")"
	dir="${CONTEXT_ROOT}/${name}"
	[[ -f "${dir}/Dockerfile" ]] || die "missing ${dir}/Dockerfile"
	hash="$(input_hash "${dir}" "$(image_id "$(image_ref debian)")")"
	if [[ "${FORCE}" -eq 0 && "$(image_label "${ref}")" == "${hash}" ]]; then
		log "${ref}: up to date, skipped"
		SKIPPED=1
		return 0
	fi
	local -a args=(--network host --label "${LABEL_KEY}=${hash}" --tag "${ref}")
	if [[ "${FORCE}" -eq 1 ]]; then
		args+=(--no-cache)
	fi
	if [[ "${name}" == golang ]]; then
		start_module_proxy
		args+=(--build-arg "GOPROXY=${MODPROXY_URL}")
	fi
	docker build "${args[@]}" "${dir}" >"${WORK_DIR}/${name}.build.log" 2>&1 || {
		tail -n 40 "${WORK_DIR}/${name}.build.log" >&2
		die "${ref}: docker build failed"
	}
}

# The distroless-like runtime base: a tiny tarball, not FROM the full base.
build_static() {
	local ref dir base hash stage
	ref="$(image_ref static)"
	dir="${CONTEXT_ROOT}/static"
	base="$(image_ref debian)"
	hash="$(input_hash "${dir}" "$(image_id "${base}")")"
	if [[ "${FORCE}" -eq 0 && "$(image_label "${ref}")" == "${hash}" ]]; then
		log "${ref}: up to date, skipped"
		SKIPPED=1
		return 0
	fi
	stage="${WORK_DIR}/static-rootfs"
	mkdir -p "${stage}"
	cp -a "${dir}/rootfs/." "${stage}/"
	# CA bundle, zoneinfo and the netbase tables straight from the base rootfs.
	docker run --rm --network none --entrypoint tar "${base}" \
		-C / -cf - etc/ssl/certs/ca-certificates.crt usr/share/zoneinfo \
		etc/services etc/protocols etc/ethertypes |
		tar -C "${stage}" -xf -
	mkdir -p "${stage}"/{tmp,root,home/nonroot,var/tmp}
	chmod 1777 "${stage}/tmp" "${stage}/var/tmp"
	chmod 0700 "${stage}/root" "${stage}/home/nonroot"
	chmod 0644 "${stage}"/etc/{passwd,group,nsswitch.conf,os-release}
	chown -R 0:0 "${stage}"
	chown 65532:65532 "${stage}/home/nonroot"
	tar --numeric-owner --sort=name --mtime=@0 -C "${stage}" -cf - . |
		docker import \
			--change "LABEL ${LABEL_KEY}=${hash}" \
			--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
			--change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
			--change 'USER 65532:65532' \
			--change 'WORKDIR /home/nonroot' \
			- "${ref}" >/dev/null
}

# drop_replaced OLD_ID REF: after a rebuild, remove the image REF used to
# point at — by exact ID, never a prune: others may be building on our images
# concurrently (labels are inherited, too).  rmi refuses while the old image
# still has a tag, child images or containers, and then it is simply kept.
drop_replaced() {
	local old="$1" ref="$2"
	[[ -n "${old}" && "${old}" != "$(image_id "${ref}")" ]] || return 0
	if [[ "$(docker image inspect --format '{{ len .RepoTags }}' "${old}" 2>/dev/null)" == 0 ]]; then
		docker rmi "${old}" >/dev/null 2>&1 ||
			log "${ref}: previous image ${old:7:12} still in use, kept"
	fi
}

build_one() {
	local name="$1" ref old start="${SECONDS}"
	ref="$(image_ref "${name}")"
	old="$(image_id "${ref}" 2>/dev/null || true)"
	SKIPPED=0
	case "${name}" in
		debian) build_debian ;;
		static) build_static ;;
		*) build_dockerfile "${name}" ;;
	esac
	if [[ "${SKIPPED}" -eq 0 ]]; then
		log "${ref}: built in $(elapsed "${start}")"
		drop_replaced "${old}" "${ref}"
	fi
}

check_all() {
	local name ref missing=0
	for name in "${ALL_NAMES[@]}"; do
		ref="$(image_ref "${name}")"
		if image_exists "${ref}"; then
			echo "present: ${ref}"
		else
			echo "missing: ${ref}"
			missing=1
		fi
	done
	return "${missing}"
}

main() {
	local -a names=()
	while (($#)); do
		case "$1" in
			--force) FORCE=1 ;;
			--refresh-rootfs) REFRESH_ROOTFS=1 ;;
			--check) CHECK=1 ;;
			-h | --help)
				usage
				exit 0
				;;
			-*) die "unknown option: $1 (see --help)" ;;
			*)
				image_ref "$1" >/dev/null || die "unknown image: $1 (one of: ${ALL_NAMES[*]})"
				names+=("$1")
				;;
		esac
		shift
	done

	docker info >/dev/null 2>&1 || die "docker engine not reachable (start dockerd first)"
	if [[ "${CHECK}" -eq 1 ]]; then
		check_all
		return
	fi
	((${#names[@]})) || names=("${ALL_NAMES[@]}")
	if [[ "${FORCE}" -eq 1 && " ${names[*]} " == *" debian "* ]]; then
		FORCE_BASE=1
	fi

	mkdir -p "${CACHE_DIR}"
	# One build at a time per cache dir.
	exec 9>"${CACHE_DIR}/.lock"
	flock -w 3600 9 || die "timed out waiting for ${CACHE_DIR}/.lock"
	WORK_DIR="$(mktemp -d "${CACHE_DIR}/work.XXXXXX")"
	trap cleanup EXIT

	local total="${SECONDS}" name
	# The base comes first: everything else derives from it.
	build_one debian
	for name in "${names[@]}"; do
		[[ "${name}" == debian ]] || build_one "${name}"
	done
	log "all done in $(elapsed "${total}")"
	docker images 'polls-local/*'
}

main "$@"
