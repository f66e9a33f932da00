/*
 * detect.c — image probing (see detect.h for the rules).
 *
 * The bytes come from users, so the ELF reader never trusts an offset: every
 * table and string is checked against the buffer before it is read, and all
 * arithmetic on file-provided values is done in uint64_t from 16/32-bit
 * fields or guarded against overflow.
 */
#include "detect.h"

#include <elf.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MB_MAGIC 0x1BADB002u
#define MB_SEARCH 8192u   /* the whole header must lie in the first 8 KiB */
#define MB_HDR_LEN 12u    /* magic, flags, checksum */
#define XEN_NOTE_PHYS32_ENTRY 18u
#define MB2_MAGIC 0xE85250D6u
#define MB2_SEARCH 32768u /* multiboot2: the header lies in the first 32 KiB, 8-aligned */
#define MB2_HDR_LEN 16u   /* magic, architecture, header_length, checksum */
#define MB2_ARCH_I386 0u

/* What the ELF reader found, class-independent. */
struct elf_facts {
	bool is_elf;
	bool elf64;
	unsigned machine;
	unsigned type;
	uint64_t entry;
	bool interp;
	char interp_path[64];
	bool xen_note;
	bool phys32_note;
	bool uk_section;
	bool uk_env_param; /* a libparam section of libposix_environ */
	bool header_ok; /* class, machine and type were read */
	const char *bad; /* set when the ELF cannot be loaded; static string */
};

static uint16_t rd16(const unsigned char *p)
{
	uint16_t v;
	memcpy(&v, p, sizeof(v));
	return le16toh(v);
}

static uint32_t rd32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return le32toh(v);
}

static uint64_t rd64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return le64toh(v);
}

/* [off, off+size) lies inside a buffer of `len` bytes (overflow-safe). */
static bool in_range(size_t len, uint64_t off, uint64_t size)
{
	return off <= len && size <= (uint64_t)len - off;
}

static bool find_multiboot(const unsigned char *b, size_t len)
{
	size_t end = len < MB_SEARCH ? len : MB_SEARCH;

	for (size_t off = 0; off + MB_HDR_LEN <= end; off += 4) {
		uint32_t magic = rd32(b + off);
		if (magic != MB_MAGIC)
			continue;
		/* The checksum makes magic + flags + checksum wrap to zero. */
		if ((uint32_t)(magic + rd32(b + off + 4) + rd32(b + off + 8)) == 0)
			return true;
	}
	return false;
}

/* A multiboot2 header for i386 (32-bit protected-mode entry, the x86 kind) with a valid checksum. */
static bool find_multiboot2(const unsigned char *b, size_t len)
{
	size_t end = len < MB2_SEARCH ? len : MB2_SEARCH;

	for (size_t off = 0; off + MB2_HDR_LEN <= end; off += 8) {
		uint32_t magic = rd32(b + off);
		if (magic != MB2_MAGIC)
			continue;
		uint32_t arch = rd32(b + off + 4), hlen = rd32(b + off + 8);
		if (arch == MB2_ARCH_I386 && hlen >= MB2_HDR_LEN &&
		    (uint32_t)(magic + arch + hlen + rd32(b + off + 12)) == 0)
			return true;
	}
	return false;
}

static const char *machine_name(unsigned m)
{
	switch (m) {
	case EM_X86_64: return "x86-64";
	case EM_386: return "i386";
	case EM_AARCH64: return "aarch64";
	case EM_ARM: return "arm";
	case EM_RISCV: return "riscv";
	case EM_PPC: return "ppc";
	case EM_PPC64: return "ppc64";
	case EM_S390: return "s390";
	case EM_MIPS: return "mips";
	case EM_SPARCV9: return "sparc64";
	case EM_IA_64: return "ia64";
#ifdef EM_LOONGARCH
	case EM_LOONGARCH: return "loongarch";
#endif
	default: return NULL;
	}
}

/* Walk a note area; `align` is 4 or 8 (the area's alignment). */
static void scan_notes(const unsigned char *b, size_t len, uint64_t off, uint64_t size,
                       uint64_t align, struct elf_facts *f)
{
	if (!in_range(len, off, size))
		return;
	if (align != 8)
		align = 4;
	while (size >= 12) {
		uint64_t namesz = rd32(b + off);
		uint64_t descsz = rd32(b + off + 4);
		uint32_t type = rd32(b + off + 8);
		uint64_t namepad = (namesz + align - 1) & ~(align - 1);
		uint64_t descpad = (descsz + align - 1) & ~(align - 1);
		uint64_t need = 12 + namepad + descpad; /* < 2^34: no overflow */

		if (need > size)
			return;
		const unsigned char *name = b + off + 12;
		if ((namesz == 4 && memcmp(name, "Xen", 4) == 0) ||
		    (namesz == 3 && memcmp(name, "Xen", 3) == 0)) {
			f->xen_note = true;
			if (type == XEN_NOTE_PHYS32_ENTRY)
				f->phys32_note = true;
		}
		off += need;
		size -= need;
	}
}

static void copy_interp(const unsigned char *b, size_t len, uint64_t off, uint64_t size,
                        struct elf_facts *f)
{
	f->interp = true;
	f->interp_path[0] = '\0';
	if (!in_range(len, off, size))
		return;
	size_t n = 0;
	for (uint64_t i = 0; i < size && n + 1 < sizeof(f->interp_path); i++) {
		unsigned char c = b[off + i];
		if (c == '\0')
			break;
		f->interp_path[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	f->interp_path[n] = '\0';
}

static void scan_phdrs(const unsigned char *b, size_t len, uint64_t phoff, unsigned phnum,
                       unsigned phentsize, struct elf_facts *f)
{
	unsigned need = f->elf64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);

	if (phnum == 0) {
		f->bad = "no program headers";
		return;
	}
	if (phentsize < need) {
		f->bad = "corrupt ELF: program header entries too small";
		return;
	}
	if (!in_range(len, phoff, (uint64_t)phnum * phentsize)) {
		f->bad = "corrupt ELF: program headers lie outside the file";
		return;
	}
	for (unsigned i = 0; i < phnum; i++) {
		const unsigned char *p = b + phoff + (uint64_t)i * phentsize;
		uint32_t type = rd32(p);
		uint64_t off, filesz, align;

		if (f->elf64) {
			off = rd64(p + offsetof(Elf64_Phdr, p_offset));
			filesz = rd64(p + offsetof(Elf64_Phdr, p_filesz));
			align = rd64(p + offsetof(Elf64_Phdr, p_align));
		} else {
			off = rd32(p + offsetof(Elf32_Phdr, p_offset));
			filesz = rd32(p + offsetof(Elf32_Phdr, p_filesz));
			align = rd32(p + offsetof(Elf32_Phdr, p_align));
		}
		if (type == PT_INTERP)
			copy_interp(b, len, off, filesz, f);
		else if (type == PT_NOTE)
			scan_notes(b, len, off, filesz, align, f);
	}
}

/* Sections are optional for loading, so damage here is ignored, not fatal. */
static void scan_shdrs(const unsigned char *b, size_t len, uint64_t shoff, unsigned shnum,
                       unsigned shentsize, unsigned shstrndx, struct elf_facts *f)
{
	unsigned need = f->elf64 ? sizeof(Elf64_Shdr) : sizeof(Elf32_Shdr);
	uint64_t stroff = 0, strsize = 0;

	if (shoff == 0 || shnum == 0 || shentsize < need ||
	    !in_range(len, shoff, (uint64_t)shnum * shentsize))
		return;
	if (shstrndx < shnum) {
		const unsigned char *s = b + shoff + (uint64_t)shstrndx * shentsize;
		stroff = f->elf64 ? rd64(s + offsetof(Elf64_Shdr, sh_offset))
		                  : rd32(s + offsetof(Elf32_Shdr, sh_offset));
		strsize = f->elf64 ? rd64(s + offsetof(Elf64_Shdr, sh_size))
		                   : rd32(s + offsetof(Elf32_Shdr, sh_size));
		if (!in_range(len, stroff, strsize))
			strsize = 0;
	}
	for (unsigned i = 0; i < shnum; i++) {
		const unsigned char *s = b + shoff + (uint64_t)i * shentsize;
		uint32_t name = rd32(s);
		uint32_t type = rd32(s + 4);

		if (name < strsize && strsize - name >= 4 && memcmp(b + stroff + name, ".uk_", 4) == 0)
			f->uk_section = true;
		/* ".uk_libparam_params_libposix_environ" (0.16); "__param_arg" sections in older releases. */
		const char *sname = name < strsize ? (const char *)b + stroff + name : NULL;
		size_t slen = sname ? strnlen(sname, strsize - name) : 0;
		if (sname && memmem(sname, slen, "posix_environ", 13) &&
		    (memmem(sname, slen, "uk_libparam", 11) || memmem(sname, slen, "__param", 7)))
			f->uk_env_param = true;
		if (type == SHT_NOTE) {
			uint64_t off, size, align;
			if (f->elf64) {
				off = rd64(s + offsetof(Elf64_Shdr, sh_offset));
				size = rd64(s + offsetof(Elf64_Shdr, sh_size));
				align = rd64(s + offsetof(Elf64_Shdr, sh_addralign));
			} else {
				off = rd32(s + offsetof(Elf32_Shdr, sh_offset));
				size = rd32(s + offsetof(Elf32_Shdr, sh_size));
				align = rd32(s + offsetof(Elf32_Shdr, sh_addralign));
			}
			scan_notes(b, len, off, size, align, f);
		}
	}
}

static void parse_elf(const unsigned char *b, size_t len, struct elf_facts *f)
{
	uint64_t phoff, shoff;
	unsigned phnum, phentsize, shnum, shentsize, shstrndx;

	if (len < 4 || memcmp(b, ELFMAG, SELFMAG) != 0)
		return;
	f->is_elf = true;
	if (len < EI_NIDENT) {
		f->bad = "truncated ELF header";
		return;
	}
	if (b[EI_CLASS] != ELFCLASS32 && b[EI_CLASS] != ELFCLASS64) {
		f->bad = "ELF with an unknown class";
		return;
	}
	f->elf64 = b[EI_CLASS] == ELFCLASS64;
	if (len < (f->elf64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr))) {
		f->bad = "truncated ELF header";
		return;
	}
	if (b[EI_DATA] != ELFDATA2LSB) {
		f->bad = "big-endian ELF, not x86-64";
		return;
	}
	f->type = rd16(b + offsetof(Elf64_Ehdr, e_type));
	f->machine = rd16(b + offsetof(Elf64_Ehdr, e_machine));
	f->header_ok = true;
	if (f->elf64) {
		f->entry = rd64(b + offsetof(Elf64_Ehdr, e_entry));
		phoff = rd64(b + offsetof(Elf64_Ehdr, e_phoff));
		shoff = rd64(b + offsetof(Elf64_Ehdr, e_shoff));
		phentsize = rd16(b + offsetof(Elf64_Ehdr, e_phentsize));
		phnum = rd16(b + offsetof(Elf64_Ehdr, e_phnum));
		shentsize = rd16(b + offsetof(Elf64_Ehdr, e_shentsize));
		shnum = rd16(b + offsetof(Elf64_Ehdr, e_shnum));
		shstrndx = rd16(b + offsetof(Elf64_Ehdr, e_shstrndx));
	} else {
		f->entry = rd32(b + offsetof(Elf32_Ehdr, e_entry));
		phoff = rd32(b + offsetof(Elf32_Ehdr, e_phoff));
		shoff = rd32(b + offsetof(Elf32_Ehdr, e_shoff));
		phentsize = rd16(b + offsetof(Elf32_Ehdr, e_phentsize));
		phnum = rd16(b + offsetof(Elf32_Ehdr, e_phnum));
		shentsize = rd16(b + offsetof(Elf32_Ehdr, e_shentsize));
		shnum = rd16(b + offsetof(Elf32_Ehdr, e_shnum));
		shstrndx = rd16(b + offsetof(Elf32_Ehdr, e_shstrndx));
	}
	scan_shdrs(b, len, shoff, shnum, shentsize, shstrndx, f);
	scan_phdrs(b, len, phoff, phnum, phentsize, f);
}

/* Platform named by a Unikraft-style file-name suffix, or NONE. */
static enum drv_platform name_platform(const char *name, bool *ret_unikraft)
{
	static const struct {
		const char *suffix;
		enum drv_platform platform;
	} suffixes[] = {
		{ .suffix = "_qemu-", .platform = DRV_PLATFORM_QEMU },
		{ .suffix = "_kvm-", .platform = DRV_PLATFORM_QEMU },
		{ .suffix = "_xen-", .platform = DRV_PLATFORM_XEN },
		{ .suffix = "_linuxu-", .platform = DRV_PLATFORM_LINUXU },
		{ .suffix = "_fc-", .platform = DRV_PLATFORM_NONE }, /* firecracker: no driver */
	};
	const char *base;

	*ret_unikraft = false;
	if (!name)
		return DRV_PLATFORM_NONE;
	base = strrchr(name, '/');
	base = base ? base + 1 : name;
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		if (strstr(base, suffixes[i].suffix)) {
			*ret_unikraft = true;
			return suffixes[i].platform;
		}
	}
	return DRV_PLATFORM_NONE;
}

static void describe_start(const unsigned char *b, size_t len, char *out, size_t n)
{
	char shown[5];
	size_t k = len < 4 ? len : 4;

	for (size_t i = 0; i < k; i++)
		shown[i] = (b[i] >= 0x20 && b[i] < 0x7f && b[i] != '\'') ? (char)b[i] : '.';
	shown[k] = '\0';
	snprintf(out, n, "not an ELF or multiboot image (starts with '%s')", shown);
}

static void not_runnable_elf(const struct elf_facts *f, char *out, size_t n)
{
	const char *mname = machine_name(f->machine);
	char mbuf[24];

	if (!mname) {
		snprintf(mbuf, sizeof(mbuf), "machine %u", f->machine);
		mname = mbuf;
	}
	if (!f->header_ok)
		snprintf(out, n, "%s", f->bad ? f->bad : "unreadable ELF header");
	else if (f->machine != EM_X86_64 && f->machine != EM_386)
		snprintf(out, n, "ELF for %s, not x86-64", mname);
	else if (!f->elf64)
		snprintf(out, n, "32-bit %s ELF without a multiboot header, not runnable", mname);
	else if (f->type == ET_REL)
		snprintf(out, n, "relocatable object file, not an executable");
	else if (f->type == ET_CORE)
		snprintf(out, n, "core dump, not an executable");
	else if (f->bad)
		snprintf(out, n, "%s", f->bad);
	else if (f->type == ET_DYN)
		snprintf(out, n, "shared library without an entry point, not an executable");
	else
		snprintf(out, n, "ELF of unsupported type %u", f->type);
}

static const char *const scan_needles[] = { "Unikraft", "Powered by" };
#define SCAN_KEEP 9 /* the longest needle's length - 1: what can span two pieces */

static bool has_needle(const void *b, size_t len)
{
	for (size_t i = 0; i < sizeof(scan_needles) / sizeof(scan_needles[0]); i++)
		if (memmem(b, len, scan_needles[i], strlen(scan_needles[i])))
			return true;
	return false;
}

void detect_scan_feed(struct detect_scan *s, const void *buf, size_t len)
{
	const unsigned char *b = buf;
	if (!len || s->found || s->seen >= DETECT_MAX_READ)
		return;
	if (len > DETECT_MAX_READ - s->seen)
		len = (size_t)(DETECT_MAX_READ - s->seen);
	/* A needle across the boundary lies in the previous piece's last SCAN_KEEP bytes and
	 * this one's first SCAN_KEEP. */
	unsigned char edge[2 * SCAN_KEEP];
	size_t head = len < SCAN_KEEP ? len : SCAN_KEEP;
	memcpy(edge, s->tail, s->tail_len);
	memcpy(edge + s->tail_len, b, head);
	if (has_needle(edge, s->tail_len + head) || has_needle(b, len)) {
		s->found = 1;
		return;
	}
	/* The new tail: the last SCAN_KEEP bytes of what was seen. */
	if (len >= SCAN_KEEP) {
		memcpy(s->tail, b + len - SCAN_KEEP, SCAN_KEEP);
		s->tail_len = SCAN_KEEP;
	} else {
		size_t all = s->tail_len + len, keep = all < SCAN_KEEP ? all : SCAN_KEEP;
		memmove(s->tail, edge + all - keep, keep);
		s->tail_len = keep;
	}
	s->seen += len;
}

static int detect(const void *buf, size_t len, const char *name_hint, int strings, struct detect_result *ret);

int detect_buffer(const void *buf, size_t len, const char *name_hint, struct detect_result *ret)
{
	return detect(buf, len, name_hint, -1, ret);
}

int detect_buffer_scanned(const void *buf, size_t len, const char *name_hint, const struct detect_scan *scan,
                          struct detect_result *ret)
{
	return detect(buf, len, name_hint, scan ? scan->found : -1, ret);
}

/* `strings`: 1 or 0 when the byte strings were already looked for in these bytes, -1 to look. */
static int detect(const void *buf, size_t len, const char *name_hint, int strings, struct detect_result *ret)
{
	const unsigned char *b = buf;
	struct elf_facts f = { 0 };
	bool mb, mb2, name_uk, linux_exec;
	enum drv_platform by_name, cand = DRV_PLATFORM_NONE, pick;
	const char *uk;

	if (!ret || (!buf && len > 0))
		return -EINVAL;
	memset(ret, 0, sizeof(*ret));
	ret->platform = DRV_PLATFORM_NONE;
	if (len == 0) {
		snprintf(ret->summary, sizeof(ret->summary), "empty file, not an image");
		return 0;
	}

	mb = find_multiboot(b, len);
	mb2 = find_multiboot2(b, len);
	parse_elf(b, len, &f);
	by_name = name_platform(name_hint, &name_uk);

	if (mb)
		ret->flags |= DETECT_MULTIBOOT;
	if (mb2)
		ret->flags |= DETECT_MULTIBOOT2;
	if (f.is_elf && f.elf64)
		ret->flags |= DETECT_ELF64;
	if (mb && f.is_elf && !f.elf64 && !f.bad)
		ret->flags |= DETECT_ELF32_WRAPPER;
	/* The byte strings only mean something inside an image (a .config mentions Unikraft too). */
	if (f.uk_section || name_uk ||
	    ((mb || f.is_elf) && (strings >= 0 ? strings == 1 : has_needle(b, len))))
		ret->flags |= DETECT_UNIKRAFT;
	if (f.uk_env_param)
		ret->flags |= DETECT_UK_ENV;

	/* Only a loadable x86-64 ELF64 counts; a multiboot wrapper need not be. */
	linux_exec = f.is_elf && !f.bad && f.elf64 && f.machine == EM_X86_64 &&
	             (f.type == ET_EXEC || (f.type == ET_DYN && f.entry != 0));
	if (linux_exec) {
		if (f.interp)
			ret->flags |= DETECT_DYNAMIC;
		else if (f.type == ET_EXEC)
			ret->flags |= DETECT_STATIC;
		else
			ret->flags |= DETECT_STATIC_PIE;
		if (f.phys32_note)
			ret->flags |= DETECT_PVH;
		else if (f.xen_note)
			ret->flags |= DETECT_XEN_PV;
	}

	if (mb || (ret->flags & DETECT_PVH))
		cand |= DRV_PLATFORM_QEMU;
	if (linux_exec && f.xen_note)
		cand |= DRV_PLATFORM_XEN;
	/* A kernel is never a Linux program, whatever its ELF header says. */
	if (linux_exec && !f.xen_note && !mb && !mb2)
		cand |= DRV_PLATFORM_LINUXU;

	/* Kernel markers beat "plain executable"; the name only picks among what the bytes allow. */
	if (by_name != DRV_PLATFORM_NONE && (cand & by_name))
		pick = by_name;
	else if (cand & DRV_PLATFORM_QEMU)
		pick = DRV_PLATFORM_QEMU;
	else if (cand & DRV_PLATFORM_XEN)
		pick = DRV_PLATFORM_XEN;
	else
		pick = cand;
	ret->platform = pick;

	uk = (ret->flags & DETECT_UNIKRAFT) ? " (Unikraft)" : "";
	switch (pick) {
	case DRV_PLATFORM_QEMU:
		if (mb)
			snprintf(ret->summary, sizeof(ret->summary), "multiboot kernel%s", uk);
		else
			snprintf(ret->summary, sizeof(ret->summary), "PVH kernel%s%s",
			         mb2 ? " (also multiboot2, booted through PVH)" : "", uk);
		break;
	case DRV_PLATFORM_XEN:
		snprintf(ret->summary, sizeof(ret->summary), "Xen PV kernel%s", uk);
		break;
	case DRV_PLATFORM_LINUXU:
		if (f.interp)
			snprintf(ret->summary, sizeof(ret->summary),
			         "dynamic x86-64 Linux ELF (interpreter %s)%s",
			         f.interp_path[0] ? f.interp_path : "unreadable", uk);
		else
			snprintf(ret->summary, sizeof(ret->summary), "%s x86-64 Linux ELF%s",
			         f.type == ET_EXEC ? "static" : "static-pie",
			         *uk ? " (Unikraft linuxu)" : "");
		break;
	default:
		if (mb2)
			/* QEMU's -kernel loads Linux, multiboot v1 and PVH kernels only (hw/i386/x86.c). */
			snprintf(ret->summary, sizeof(ret->summary),
			         "multiboot2 kernel: QEMU's -kernel cannot boot multiboot2; the kernel needs a "
			         "multiboot v1 header or a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)");
		else if (f.is_elf)
			not_runnable_elf(&f, ret->summary, sizeof(ret->summary));
		else
			describe_start(b, len, ret->summary, sizeof(ret->summary));
		break;
	}
	return 0;
}

int detect_file(const char *path, const char *name_hint, struct detect_result *ret)
{
	struct stat st;
	unsigned char *buf = NULL;
	size_t cap, len = 0;
	int fd, r = 0;

	if (!path || !ret)
		return -EINVAL;
	memset(ret, 0, sizeof(*ret));
	ret->platform = DRV_PLATFORM_NONE;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		r = -errno;
		goto cleanup;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto cleanup;
	}
	if (S_ISDIR(st.st_mode)) {
		r = -EISDIR;
		goto cleanup;
	}
	/* Size from fstat is a hint only (pipes, files that change); read to EOF or the cap. */
	cap = (S_ISREG(st.st_mode) && st.st_size > 0 && (uint64_t)st.st_size < DETECT_MAX_READ)
	              ? (size_t)st.st_size + 1
	              : DETECT_MAX_READ;
	buf = malloc(cap);
	if (!buf) {
		r = -ENOMEM;
		goto cleanup;
	}
	while (len < cap) {
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			goto cleanup;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > DETECT_MAX_READ)
		len = DETECT_MAX_READ;
	r = detect_buffer(buf, len, name_hint ? name_hint : path, ret);
cleanup:
	if (r < 0)
		snprintf(ret->summary, sizeof(ret->summary), "cannot read %s: %s", path, strerror(-r));
	free(buf);
	if (fd >= 0)
		close(fd);
	return r;
}
