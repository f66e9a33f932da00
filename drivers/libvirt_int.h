/*
 * libvirt_int.h — internals of the libvirt driver, shared between its files
 * (libvirt_xml.c: the domain XML and the pure end classifier; libvirt.c: the
 * connection, its event thread and the runs) and its unit tests.
 */
#ifndef UKRUN_LIBVIRT_INT_H
#define UKRUN_LIBVIRT_INT_H

#include <libvirt/libvirt.h>
#include <stddef.h>

#include "driver.h"

#define LV_DEFAULT_URI "qemu:///system"
#define LV_URI_ENV "UKRUN_LIBVIRT_URI" /* set by runnerd from --libvirt-uri / runnerd.conf */
#define LV_NAME_PREFIX "ukrun-"
/* Namespace of the domain metadata that marks who owns a domain. */
#define LV_META_NS "https://ukrun.dev/xmlns/libvirt/1"
#define LV_META_PREFIX "ukrun"
/* Remote hosts: the storage pool holding one volume per image digest. */
#define LV_POOL_NAME "ukrun"
#define LV_POOL_PATH "/var/lib/libvirt/images/ukrun"

/* What the XML builder needs besides the spec. */
struct lv_xml_opts {
	const char *name;        /* domain name */
	const char *owner;       /* ownership mark stored in <metadata> */
	const char *kernel_path; /* path of the kernel as the libvirt host sees it */
	const char *initrd_path; /* NULL: none */
	const char *bios;        /* firmware ROM (<loader type='rom'>, e.g. qboot); NULL = SeaBIOS */
	int kvm;                 /* 1: type='kvm', 0: type='qemu' (TCG) */
	int run_as_uid;          /* >= 0: QEMU runs as uid:gid through a static DAC label (local hosts) */
	int run_as_gid;
};

/* The domain XML for `spec` (malloc'd in *ret_xml). Returns 0 or -EINVAL with
 * *ret_err (arguments the Unikraft command line cannot carry, bad machine). */
int lv_build_xml(const struct drv_spec *spec, const struct lv_xml_opts *o, char **ret_xml,
                 char **ret_err);

/* The domain name for run `run_id` of `owner`: "ukrun-<id>-<8 hex of the owner>"
 * (two daemons on one libvirtd both have a run 1). malloc'd. */
char *lv_domain_name(const char *run_id, const char *owner);

/* The owner mark inside a domain's metadata XML (as virDomainGetMetadata
 * returns it), malloc'd; NULL when there is none. */
char *lv_meta_owner(const char *meta_xml);

/* What libvirt told about one domain, for lv_classify_end. */
struct lv_end_facts {
	int killed;      /* the core asked for the kill */
	int rebooted;    /* a reboot event (triple fault / reset: on_reboot is restart) */
	int crashed;     /* a Crashed event (panic device) */
	int shutdown;    /* a Shutdown event (guest-initiated power-off) */
	int stopped;     /* the Stopped event's detail (virDomainEventStoppedDetailType), -1 if none */
	int paused;      /* the hypervisor paused the running guest (KVM internal error) */
};

/* Map libvirt's lifecycle facts to an outcome (message: static text or NULL). */
void lv_classify_end(const struct lv_end_facts *f, struct drv_outcome *ret_out);

/* Remote hosts (libvirt_pool.c, on the driver's thread): make sure the pool exists and
 * runs; its target directory in *ret_path (malloc'd). 0 or -errno with *ret_err. */
int lv_pool_setup(virConnectPtr conn, char **ret_path, char **ret_err);

/* The volume named `sha` in the pool, uploaded from `local_path` when absent
 * (*ret_uploaded = 1). 0 or -errno with *ret_err. */
int lv_volume_ensure(virConnectPtr conn, const char *sha, const char *local_path, int *ret_uploaded,
                     char **ret_err);

#endif
