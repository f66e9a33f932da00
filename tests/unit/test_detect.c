/*
 * test_detect.c — image probing on synthetic buffers, on mutated and cut
 * images (must never crash), and on the real Unikraft images of
 * ../shared/fixtures (skipped with a message when that folder is absent).
 */
#include <elf.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "detect.h"

#ifndef UKRUN_SHARED_FIXTURES_DIR
#define UKRUN_SHARED_FIXTURES_DIR "../shared/fixtures"
#endif

#define MB_MAGIC 0x1BADB002u

static void put32(unsigned char *p, uint32_t v)
{
	memcpy(p, &v, 4); /* x86-64 hosts only: little-endian like the images */
}

static void put_multiboot(unsigned char *b, size_t off, uint32_t flags, int good_checksum)
{
	put32(b + off, MB_MAGIC);
	put32(b + off + 4, flags);
	put32(b + off + 8, (uint32_t)(-(MB_MAGIC + flags)) + (good_checksum ? 0 : 1));
}

static struct detect_result probe(const void *buf, size_t len, const char *name)
{
	struct detect_result r;

	assert_int_equal(detect_buffer(buf, len, name, &r), 0);
	assert_non_null(memchr(r.summary, '\0', sizeof(r.summary)));
	assert_true(r.summary[0] != '\0');
	return r;
}

/* ---- synthetic ELF64 builder ---- */

struct elf_opts {
	unsigned char class;
	uint16_t type, machine;
	uint64_t entry;
	int interp;           /* add PT_INTERP */
	int note_type;        /* >0: add a "Xen" note of this type in a PT_NOTE */
	const char *section;  /* add a section with this name */
	uint64_t phoff_override;
};

#define IMG_SIZE 4096

/* Layout: ehdr @0, phdrs @64 (3 max), interp @512, note @600, shstrtab @700, shdrs @1024. */
static void build_elf64(unsigned char *b, const struct elf_opts *o)
{
	Elf64_Ehdr *eh = (Elf64_Ehdr *)b;
	Elf64_Phdr *ph = (Elf64_Phdr *)(b + 64);
	int nph = 0;

	memset(b, 0, IMG_SIZE);
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = o->type;
	eh->e_machine = o->machine;
	eh->e_version = EV_CURRENT;
	eh->e_entry = o->entry;
	eh->e_phoff = o->phoff_override ? o->phoff_override : 64;
	eh->e_ehsize = sizeof(*eh);
	eh->e_phentsize = sizeof(Elf64_Phdr);
	ph[nph++] = (Elf64_Phdr){ .p_type = PT_LOAD, .p_offset = 0, .p_filesz = IMG_SIZE,
	                          .p_memsz = IMG_SIZE, .p_align = 4096 };
	if (o->interp) {
		strcpy((char *)b + 512, "/lib64/ld-linux-x86-64.so.2");
		ph[nph++] = (Elf64_Phdr){ .p_type = PT_INTERP, .p_offset = 512, .p_filesz = 28 };
	}
	if (o->note_type > 0) {
		put32(b + 600, 4);             /* namesz */
		put32(b + 604, 4);             /* descsz */
		put32(b + 608, (uint32_t)o->note_type);
		memcpy(b + 612, "Xen", 4);
		put32(b + 616, 0x100000);
		ph[nph++] = (Elf64_Phdr){ .p_type = PT_NOTE, .p_offset = 600, .p_filesz = 20, .p_align = 4 };
	}
	eh->e_phnum = (uint16_t)nph;
	if (o->section) {
		Elf64_Shdr *sh = (Elf64_Shdr *)(b + 1024);
		char *strtab = (char *)b + 700;
		strtab[0] = '\0';
		strcpy(strtab + 1, ".shstrtab");
		strcpy(strtab + 11, o->section);
		sh[1] = (Elf64_Shdr){ .sh_name = 1, .sh_type = SHT_STRTAB, .sh_offset = 700, .sh_size = 200 };
		sh[2] = (Elf64_Shdr){ .sh_name = 11, .sh_type = SHT_PROGBITS, .sh_offset = 0, .sh_size = 8 };
		eh->e_shoff = 1024;
		eh->e_shentsize = sizeof(Elf64_Shdr);
		eh->e_shnum = 3;
		eh->e_shstrndx = 1;
	}
}

static struct elf_opts x86_exec(void)
{
	return (struct elf_opts){ .class = ELFCLASS64, .type = ET_EXEC, .machine = EM_X86_64,
	                          .entry = 0x401000 };
}

static void test_multiboot_positions(void **state)
{
	static unsigned char b[16384];
	struct detect_result r;

	(void)state;
	memset(b, 0, sizeof(b));
	put_multiboot(b, 0, 0x00010003, 1);
	r = probe(b, sizeof(b), NULL);
	assert_int_equal(r.platform, DRV_PLATFORM_QEMU);
	assert_true(r.flags & DETECT_MULTIBOOT);
	assert_false(r.flags & DETECT_UNIKRAFT);
	assert_string_equal(r.summary, "multiboot kernel");

	memset(b, 0, sizeof(b));
	put_multiboot(b, 8192 - 12, 0, 1); /* last place the whole header still fits */
	r = probe(b, sizeof(b), NULL);
	assert_int_equal(r.platform, DRV_PLATFORM_QEMU);

	memset(b, 0, sizeof(b));
	put_multiboot(b, 8192 + 4, 0, 1);
	r = probe(b, sizeof(b), NULL);
	assert_int_equal(r.platform, DRV_PLATFORM_NONE);
	assert_false(r.flags & DETECT_MULTIBOOT);

	memset(b, 0, sizeof(b));
	put_multiboot(b, 8192 - 8, 0, 1); /* straddles the 8 KiB boundary */
	r = probe(b, sizeof(b), NULL);
	assert_int_equal(r.platform, DRV_PLATFORM_NONE);

	memset(b, 0, sizeof(b));
	put_multiboot(b, 64, 0, 0); /* bad checksum */
	r = probe(b, sizeof(b), NULL);
	assert_int_equal(r.platform, DRV_PLATFORM_NONE);

	memset(b, 0, sizeof(b));
	put_multiboot(b, 66, 0, 1); /* not 4-aligned */
	r = probe(b, sizeof(b), NULL);
	assert_int_equal(r.platform, DRV_PLATFORM_NONE);

	/* Header cut off by the end of the buffer. */
	memset(b, 0, sizeof(b));
	put_multiboot(b, 0, 0, 1);
	r = probe(b, 8, NULL);
	assert_int_equal(r.platform, DRV_PLATFORM_NONE);
	r = probe(b, 12, "x_qemu-x86_64");
	assert_int_equal(r.platform, DRV_PLATFORM_QEMU);
	assert_true(r.flags & DETECT_UNIKRAFT);
	assert_string_equal(r.summary, "multiboot kernel (Unikraft)");
}

#define MB2_MAGIC 0xE85250D6u

static void put_multiboot2(unsigned char *b, size_t off, uint32_t arch, int good_checksum)
{
	put32(b + off, MB2_MAGIC);
	put32(b + off + 4, arch);
	put32(b + off + 8, 24); /* header with the 8-byte end tag */
	put32(b + off + 12, (uint32_t)(-(MB2_MAGIC + arch + 24)) + (good_checksum ? 0 : 1));
	put32(b + off + 16, 0);
	put32(b + off + 20, 8);
}

/* QEMU cannot boot multiboot2: refused with the reason, unless a multiboot v1 header or a PVH note
 * gives QEMU a way in; never taken for a Linux program because its ELF header looks like one. */
static void test_multiboot2(void **state)
{
	static unsigned char b[IMG_SIZE * 9];
	struct elf_opts o = x86_exec();
	struct detect_result r;

	(void)state;
	build_elf64(b, &o);
	put_multiboot2(b, 2048, 0, 1);
	r = probe(b, IMG_SIZE, NULL);
	assert_int_equal(r.platform, DRV_PLATFORM_NONE);
	assert_true(r.flags & DETECT_MULTIBOOT2);
	assert_false(r.flags & DETECT_MULTIBOOT);
	assert_string_equal(r.summary, "multiboot2 kernel: QEMU's -kernel cannot boot multiboot2; the kernel needs "
	                               "a multiboot v1 header or a PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY)");
	/* The name cannot make it a Linux program either. */
	r = probe(b, IMG_SIZE, "app_linuxu-x86_64");
	assert_int_equal(r.platform, DRV_PLATFORM_NONE);

	/* Bad checksum, other architecture (4 = MIPS), not 8-aligned: not a header, a plain program. */
	build_elf64(b, &o);
	put_multiboot2(b, 2048, 0, 0);
	assert_int_equal(probe(b, IMG_SIZE, NULL).platform, DRV_PLATFORM_LINUXU);
	build_elf64(b, &o);
	put_multiboot2(b, 2048, 4, 1);
	assert_int_equal(probe(b, IMG_SIZE, NULL).platform, DRV_PLATFORM_LINUXU);
	build_elf64(b, &o);
	put_multiboot2(b, 2052, 0, 1);
	assert_int_equal(probe(b, IMG_SIZE, NULL).platform, DRV_PLATFORM_LINUXU);

	/* Past the first 32 KiB: not searched. */
	memset(b, 0, sizeof(b));
	put_multiboot2(b, 32768, 0, 1);
	r = probe(b, sizeof(b), NULL);
	assert_false(r.flags & DETECT_MULTIBOOT2);
	memset(b, 0, sizeof(b));
	put_multiboot2(b, 32768 - 24, 0, 1);
	r = probe(b, sizeof(b), NULL);
	assert_true(r.flags & DETECT_MULTIBOOT2);
	assert_int_equal(r.platform, DRV_PLATFORM_NONE);
	assert_non_null(strstr(r.summary, "multiboot2"));

	/* With a PVH note: booted through PVH. */
	o.note_type = 18;
	build_elf64(b, &o);
	put_multiboot2(b, 2048, 0, 1);
	r = probe(b, IMG_SIZE, NULL);
	assert_int_equal(r.platform, DRV_PLATFORM_QEMU);
	assert_true(r.flags & DETECT_PVH);
	assert_true(r.flags & DETECT_MULTIBOOT2);
	assert_string_equal(r.summary, "PVH kernel (also multiboot2, booted through PVH)");

	/* With a multiboot v1 header too: booted through multiboot v1. */
	memset(b, 0, sizeof(b));
	put_multiboot(b, 0, 0x00000003, 1);
	put_multiboot2(b, 16, 0, 1);
	r = probe(b, IMG_SIZE, NULL);
	assert_int_equal(r.platform, DRV_PLATFORM_QEMU);
	assert_true(r.flags & DETECT_MULTIBOOT);
	assert_true(r.flags & DETECT_MULTIBOOT2);
}

/* The ELF64 kernels of tests/fixtures, as the linker and objcopy really made them. */
static void test_built_kernels(void **state)
{
	static const struct {
		const char *name;
		enum drv_platform platform;
		unsigned flags;
	} cases[] = {
		{ "pvh_hello", DRV_PLATFORM_QEMU, DETECT_PVH | DETECT_ELF64 | DETECT_STATIC },
		{ "mb2_pvh_hello", DRV_PLATFORM_QEMU,
		  DETECT_PVH | DETECT_MULTIBOOT2 | DETECT_ELF64 | DETECT_STATIC },
		{ "mb2_hello", DRV_PLATFORM_NONE, DETECT_MULTIBOOT2 | DETECT_ELF64 | DETECT_STATIC },
		{ "mb_hello", DRV_PLATFORM_QEMU, DETECT_MULTIBOOT | DETECT_ELF32_WRAPPER },
	};
	char path[4096];
	struct detect_result r;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", UKRUN_FIXTURE_DIR, cases[i].name);
		assert_int_equal(detect_file(path, NULL, &r), 0);
		print_message("%s: %s\n", cases[i].name, r.summary);
		assert_int_equal(r.platform, cases[i].platform);
		assert_int_equal(r.flags, cases[i].flags);
	}
}

static void test_elf32_wrapper(void **state)
{
	static unsigned char b[IMG_SIZE];
	Elf32_Ehdr *eh = (Elf32_Ehdr *)b;
	Elf32_Phdr *ph = (Elf32_Phdr *)(b + 64);
	struct detect_result r;

	(void)state;
	memset(b, 0, sizeof(b));
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS32;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_386;
	eh->e_entry = 0x100000;
	eh->e_phoff = 64;
	eh->e_phentsize = sizeof(Elf32_Phdr);
	eh->e_phnum = 1;
	ph[0] = (Elf32_Phdr){ .p_type = PT_LOAD, .p_filesz = IMG_SIZE, .p_memsz = IMG_SIZE };

	r = probe(b, sizeof(b), NULL);
	assert_int_equal(r.platform, DRV_PLATFORM_NONE);
	assert_non_null(strstr(r.summary, "32-bit"));

	put_multiboot(b, 52, 0x00010003, 1); /* where Unikraft 0.17 puts it */
	memcpy(b + 2000, "Powered by", 10);
	r = probe(b, sizeof(b), NULL);
	assert_int_equal(r.platform, DRV_PLATFORM_QEMU);
	assert_true(r.flags & DETECT_MULTIBOOT);
	assert_true(r.flags & DETECT_ELF32_WRAPPER);
	assert_true(r.flags & DETECT_UNIKRAFT);
	assert_false(r.flags & DETECT_ELF64);
	assert_string_equal(r.summary, "multiboot kernel (Unikraft)");
}

static void test_elf64_kinds(void **state)
{
	static unsigned char b[IMG_SIZE];
	struct elf_opts o;
	struct detect_result r;

	(void)state;
	o = x86_exec();
	build_elf64(b, &o);
	r = probe(b, sizeof(b), "prog");
	assert_int_equal(r.platform, DRV_PLATFORM_LINUXU);
	assert_int_equal(r.flags, DETECT_ELF64 | DETECT_STATIC);
	assert_string_equal(r.summary, "static x86-64 Linux ELF");

	/* The Unikraft linuxu name alone marks it Unikraft. */
	r = probe(b, sizeof(b), "/tmp/helloworld_linuxu-x86_64");
	assert_int_equal(r.platform, DRV_PLATFORM_LINUXU);
	assert_true(r.flags & DETECT_UNIKRAFT);
	assert_string_equal(r.summary, "static x86-64 Linux ELF (Unikraft linuxu)");

	/* ... and so does a .uk_* section. */
	o.section = ".uk_bootinfo";
	build_elf64(b, &o);
	r = probe(b, sizeof(b), NULL);
	assert_true(r.flags & DETECT_UNIKRAFT);
	o.section = ".ukx";
	build_elf64(b, &o);
	r = probe(b, sizeof(b), NULL);
	assert_false(r.flags & DETECT_UNIKRAFT);

	o = x86_exec();
	o.type = ET_DYN;
	build_elf64(b, &o);
	r = probe(b, sizeof(b), NULL);
	assert_int_equal(r.platform, DRV_PLATFORM_LINUXU);
	assert_int_equal(r.flags, DETECT_ELF64 | DETECT_STATIC_PIE);
	assert_string_equal(r.summary, "static-pie x86-64 Linux ELF");

	o.interp = 1;
	build_elf64(b, &o);
	r = probe(b, sizeof(b), NULL);
	assert_int_equal(r.platform, DRV_PLATFORM_LINUXU);
	assert_int_equal(r.flags, DETECT_ELF64 | DETECT_DYNAMIC);
	assert_non_null(strstr(r.summary, "/lib64/ld-linux-x86-64.so.2"));

	o = x86_exec();
	o.type = ET_DYN;
	o.entry = 0;
	build_elf64(b, &o);
	r = probe(b, sizeof(b), NULL);
	assert_int_equal(r.platform, DRV_PLATFORM_NONE);
	assert_non_null(strstr(r.summary, "shared library"));

	o = x86_exec();
	o.type = ET_REL;
	build_elf64(b, &o);
	r = probe(b, sizeof(b), NULL);
	assert_int_equal(r.platform, DRV_PLATFORM_NONE);
	assert_non_null(strstr(r.summary, "relocatable"));

	o = x86_exec();
	o.machine = EM_AARCH64;
	build_elf64(b, &o);
	r = probe(b, sizeof(b), "app_qemu-arm64");
	assert_int_equal(r.platform, DRV_PLATFORM_NONE);
	assert_string_equal(r.summary, "ELF for aarch64, not x86-64");

	o.machine = 0x7777;
	build_elf64(b, &o);
	r = probe(b, sizeof(b), NULL);
	assert_string_equal(r.summary, "ELF for machine 30583, not x86-64");
}

static void test_xen_notes(void **state)
{
	static unsigned char b[IMG_SIZE];
	struct elf_opts o = x86_exec();
	struct detect_result r;

	(void)state;
	o.note_type = 18; /* XEN_ELFNOTE_PHYS32_ENTRY */
	build_elf64(b, &o);
	r = probe(b, sizeof(b), NULL);
	assert_int_equal(r.platform, DRV_PLATFORM_QEMU);
	assert_true(r.flags & DETECT_PVH);
	assert_false(r.flags & DETECT_XEN_PV);
	assert_non_null(strstr(r.summary, "PVH"));

	/* Xen can boot PVH too: the name breaks that tie. */
	r = probe(b, sizeof(b), "app_xen-x86_64");
	assert_int_equal(r.platform, DRV_PLATFORM_XEN);
	assert_true(r.flags & DETECT_UNIKRAFT);

	o.note_type = 6; /* XEN_ELFNOTE_GUEST_OS */
	build_elf64(b, &o);
	r = probe(b, sizeof(b), NULL);
	assert_int_equal(r.platform, DRV_PLATFORM_XEN);
	assert_true(r.flags & DETECT_XEN_PV);
	assert_false(r.flags & DETECT_PVH);
	/* A name cannot pick a platform the bytes rule out. */
	r = probe(b, sizeof(b), "app_linuxu-x86_64");
	assert_int_equal(r.platform, DRV_PLATFORM_XEN);

	/* A note whose size runs past its segment is ignored, not read. */
	put32(b + 600, 0x7fffffff);
	r = probe(b, sizeof(b), NULL);
	assert_int_equal(r.platform, DRV_PLATFORM_LINUXU);
}

static void test_garbage(void **state)
{
	static unsigned char b[IMG_SIZE];
	static const unsigned char zip[] = "PK\x03\x04\x14\x00\x00\x00\x08\x00hello.txt";
	struct elf_opts o = x86_exec();
	struct detect_result r;

	(void)state;
	r = probe("", 0, NULL);
	assert_int_equal(r.platform, DRV_PLATFORM_NONE);
	assert_non_null(strstr(r.summary, "empty"));
	assert_int_equal(detect_buffer(NULL, 0, NULL, &r), 0);
	assert_int_equal(detect_buffer(NULL, 5, NULL, &r), -EINVAL);
	assert_int_equal(detect_buffer("x", 1, NULL, NULL), -EINVAL);

	r = probe(zip, sizeof(zip) - 1, "foo.zip");
	assert_int_equal(r.platform, DRV_PLATFORM_NONE);
	assert_string_equal(r.summary, "not an ELF or multiboot image (starts with 'PK..')");

	r = probe("#!/bin/sh\necho Unikraft\n", 24, NULL);
	assert_int_equal(r.platform, DRV_PLATFORM_NONE);
	assert_false(r.flags & DETECT_UNIKRAFT);

	/* Truncated ELF headers. */
	build_elf64(b, &o);
	for (size_t n = 1; n < sizeof(Elf64_Ehdr); n++) {
		r = probe(b, n, NULL);
		assert_int_equal(r.platform, DRV_PLATFORM_NONE);
	}
	r = probe(b, 4, NULL);
	assert_non_null(strstr(r.summary, "truncated"));
	r = probe(b, 40, NULL);
	assert_non_null(strstr(r.summary, "truncated"));
	/* Header complete, program headers cut off. */
	r = probe(b, 100, NULL);
	assert_int_equal(r.platform, DRV_PLATFORM_NONE);
	assert_non_null(strstr(r.summary, "outside the file"));

	o.phoff_override = 1ull << 40;
	build_elf64(b, &o);
	r = probe(b, sizeof(b), NULL);
	assert_int_equal(r.platform, DRV_PLATFORM_NONE);
	assert_non_null(strstr(r.summary, "outside the file"));
	o.phoff_override = UINT64_MAX - 8; /* offset + size would wrap */
	build_elf64(b, &o);
	r = probe(b, sizeof(b), NULL);
	assert_int_equal(r.platform, DRV_PLATFORM_NONE);

	/* Big-endian and unknown class. */
	o = x86_exec();
	build_elf64(b, &o);
	b[EI_DATA] = ELFDATA2MSB;
	r = probe(b, sizeof(b), NULL);
	assert_int_equal(r.platform, DRV_PLATFORM_NONE);
	b[EI_DATA] = ELFDATA2LSB;
	b[EI_CLASS] = 9;
	r = probe(b, sizeof(b), NULL);
	assert_int_equal(r.platform, DRV_PLATFORM_NONE);
}

/* Random damage must never crash or read out of bounds (run under ASan in sanitizer builds). */
static void test_mutations(void **state)
{
	static unsigned char base[IMG_SIZE], b[IMG_SIZE];
	struct elf_opts o = x86_exec();
	unsigned seed = 12345;

	(void)state;
	o.interp = 1;
	o.note_type = 6;
	o.section = ".uk_libinfo";
	build_elf64(base, &o);
	for (int iter = 0; iter < 20000; iter++) {
		memcpy(b, base, sizeof(b));
		int flips = 1 + (int)(rand_r(&seed) % 8);
		for (int k = 0; k < flips; k++) {
			/* Bias towards the headers, where the offsets live. */
			size_t pos = (size_t)rand_r(&seed) % (k % 2 ? sizeof(b) : 1100);
			b[pos] = (unsigned char)rand_r(&seed);
		}
		size_t len = (size_t)rand_r(&seed) % 4 == 0 ? (size_t)rand_r(&seed) % sizeof(b) : sizeof(b);
		/* A heap copy of exactly len bytes lets ASan see any overread. */
		unsigned char *h = malloc(len ? len : 1);
		assert_non_null(h);
		memcpy(h, b, len);
		(void)probe(h, len, NULL);
		free(h);
	}
}

/* ---- real images ---- */

static const char *fixtures_dir(void)
{
	const char *env = getenv("UKRUN_SHARED_FIXTURES");
	return env && *env ? env : UKRUN_SHARED_FIXTURES_DIR;
}

static int fixture_path(char *buf, size_t n, const char *rel)
{
	struct stat st;

	snprintf(buf, n, "%s/%s", fixtures_dir(), rel);
	if (stat(buf, &st) == 0)
		return 0;
	print_message("skipping: %s not found (set UKRUN_SHARED_FIXTURES)\n", buf);
	return -1;
}

static void test_real_qemu(void **state)
{
	char path[4096];
	struct detect_result r;

	(void)state;
	if (fixture_path(path, sizeof(path), "helloworld_qemu-x86_64-norng") < 0)
		skip();
	assert_int_equal(detect_file(path, "helloworld_qemu-x86_64-norng", &r), 0);
	assert_int_equal(r.platform, DRV_PLATFORM_QEMU);
	assert_true(r.flags & DETECT_UNIKRAFT);
	assert_true(r.flags & DETECT_MULTIBOOT);
	assert_true(r.flags & DETECT_ELF32_WRAPPER);
	/* The bytes decide, not the name. */
	assert_int_equal(detect_file(path, "kernel", &r), 0);
	assert_int_equal(r.platform, DRV_PLATFORM_QEMU);
	assert_true(r.flags & DETECT_UNIKRAFT);
}

static void test_real_linuxu(void **state)
{
	char path[4096];
	struct detect_result r;

	(void)state;
	if (fixture_path(path, sizeof(path), "helloworld_linuxu-x86_64") < 0)
		skip();
	assert_int_equal(detect_file(path, "a.out", &r), 0);
	assert_int_equal(r.platform, DRV_PLATFORM_LINUXU);
	assert_true(r.flags & DETECT_UNIKRAFT);
	assert_true(r.flags & DETECT_STATIC);
	assert_true(r.flags & DETECT_ELF64);
	assert_false(r.flags & (DETECT_DYNAMIC | DETECT_MULTIBOOT));
}

/* Unikraft's Xen image: PV notes, no PVH entry → the xen driver, by its bytes alone (a neutral name). */
static void test_real_xen(void **state)
{
	char path[4096];
	struct detect_result r;

	(void)state;
	if (fixture_path(path, sizeof(path), "helloworld_xen-x86_64") < 0)
		skip();
	assert_int_equal(detect_file(path, "kernel", &r), 0);
	assert_int_equal(r.platform, DRV_PLATFORM_XEN);
	assert_true(r.flags & DETECT_XEN_PV);
	assert_true(r.flags & DETECT_UNIKRAFT);
	assert_false(r.flags & (DETECT_PVH | DETECT_MULTIBOOT | DETECT_MULTIBOOT2));
	assert_string_equal(r.summary, "Xen PV kernel (Unikraft)");
}

static void test_real_elfloader(void **state)
{
	static const char *const kernels[] = { "elfloader/elfloader-stock_qemu-x86_64",
		                               "elfloader/elfloader-exitcode_qemu-x86_64" };
	char path[4096];
	struct detect_result r;

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		if (fixture_path(path, sizeof(path), kernels[i]) < 0)
			skip();
		assert_int_equal(detect_file(path, NULL, &r), 0);
		assert_int_equal(r.platform, DRV_PLATFORM_QEMU);
		assert_true(r.flags & DETECT_UNIKRAFT);
		assert_true(r.flags & DETECT_MULTIBOOT);
	}
}

/* Every prefix of a real image: no crash, and the multiboot header alone keeps it bootable. */
static void test_real_prefixes(void **state)
{
	char path[4096];
	FILE *f;
	unsigned char *b;
	size_t n;

	(void)state;
	if (fixture_path(path, sizeof(path), "helloworld_linuxu-x86_64") < 0)
		skip();
	f = fopen(path, "rbe");
	assert_non_null(f);
	b = malloc(16384);
	assert_non_null(b);
	n = fread(b, 1, 16384, f);
	fclose(f);
	for (size_t len = 0; len <= n; len++) {
		unsigned char *h = malloc(len ? len : 1);
		assert_non_null(h);
		memcpy(h, b, len);
		(void)probe(h, len, NULL);
		free(h);
	}
	free(b);
}

static void test_host_binary(void **state)
{
	struct detect_result r;

	(void)state;
	assert_int_equal(detect_file("/bin/true", NULL, &r), 0);
	assert_int_equal(r.platform, DRV_PLATFORM_LINUXU);
	assert_true(r.flags & DETECT_DYNAMIC);
	assert_true(r.flags & DETECT_ELF64);
	assert_false(r.flags & DETECT_UNIKRAFT);

	assert_int_equal(detect_file("/nonexistent/ukrun-image", NULL, &r), -ENOENT);
	assert_int_equal(r.platform, DRV_PLATFORM_NONE);
	assert_int_equal(detect_file("/", NULL, &r), -EISDIR);
	assert_int_equal(detect_file(NULL, NULL, &r), -EINVAL);
}

/* The byte strings scanned piece by piece (an upload) give detect_buffer's answer, wherever
 * the pieces split them; only the first DETECT_MAX_READ bytes count. */
static void test_scan_pieces(void **state)
{
	static const char *const needles[] = { "Unikraft", "Powered by" };
	unsigned char b[64];
	(void)state;
	for (size_t k = 0; k < 2; k++) {
		size_t n = strlen(needles[k]);
		for (size_t at = 0; at + n <= sizeof(b); at += 7) {
			memset(b, 'x', sizeof(b));
			memcpy(b + at, needles[k], n);
			/* Two pieces, split at every offset. */
			for (size_t cut = 0; cut <= sizeof(b); cut++) {
				struct detect_scan sc = { 0 };
				detect_scan_feed(&sc, b, cut);
				detect_scan_feed(&sc, b + cut, sizeof(b) - cut);
				assert_int_equal(sc.found, 1);
			}
			/* Pieces shorter than the string: one byte, then three at a time. */
			for (size_t step = 1; step <= 3; step += 2) {
				struct detect_scan sc = { 0 };
				for (size_t off = 0; off < sizeof(b); off += step)
					detect_scan_feed(&sc, b + off, off + step <= sizeof(b) ? step : sizeof(b) - off);
				assert_int_equal(sc.found, 1);
			}
		}
		/* One byte off: not there, however split. */
		memset(b, 'x', sizeof(b));
		memcpy(b + 20, needles[k], n - 1);
		for (size_t cut = 0; cut <= sizeof(b); cut++) {
			struct detect_scan sc = { 0 };
			detect_scan_feed(&sc, b, cut);
			detect_scan_feed(&sc, b + cut, sizeof(b) - cut);
			assert_int_equal(sc.found, 0);
		}
	}

	/* The same result as detect_buffer on an ELF32 wrapper with and without the string. */
	static unsigned char img[IMG_SIZE];
	Elf32_Ehdr *eh = (Elf32_Ehdr *)img;
	memset(img, 0, sizeof(img));
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS32;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_386;
	eh->e_phoff = 64;
	eh->e_phentsize = sizeof(Elf32_Phdr);
	eh->e_phnum = 1;
	*(Elf32_Phdr *)(img + 64) = (Elf32_Phdr){ .p_type = PT_LOAD, .p_filesz = IMG_SIZE, .p_memsz = IMG_SIZE };
	put_multiboot(img, 52, 0x00010003, 1);
	for (int with = 0; with < 2; with++) {
		if (with)
			memcpy(img + 2000, "Powered by", 10);
		struct detect_scan sc = { 0 };
		detect_scan_feed(&sc, img, 1999);
		detect_scan_feed(&sc, img + 1999, sizeof(img) - 1999);
		struct detect_result a = probe(img, sizeof(img), NULL), c;
		assert_int_equal(detect_buffer_scanned(img, sizeof(img), NULL, &sc, &c), 0);
		assert_int_equal(a.platform, c.platform);
		assert_int_equal(a.flags, c.flags);
		assert_string_equal(a.summary, c.summary);
		assert_int_equal(!!(c.flags & DETECT_UNIKRAFT), with);
	}

	/* Past DETECT_MAX_READ nothing counts (detect_file reads no further). */
	struct detect_scan sc = { 0 };
	unsigned char *big = calloc(1, DETECT_MAX_READ);
	assert_non_null(big);
	detect_scan_feed(&sc, big, DETECT_MAX_READ - 4);
	detect_scan_feed(&sc, "Unikraft", 8); /* its last 4 bytes lie past the limit */
	assert_int_equal(sc.found, 0);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scan_pieces),
		cmocka_unit_test(test_multiboot_positions),
		cmocka_unit_test(test_multiboot2),
		cmocka_unit_test(test_built_kernels),
		cmocka_unit_test(test_elf32_wrapper),
		cmocka_unit_test(test_elf64_kinds),
		cmocka_unit_test(test_xen_notes),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_mutations),
		cmocka_unit_test(test_real_qemu),
		cmocka_unit_test(test_real_linuxu),
		cmocka_unit_test(test_real_xen),
		cmocka_unit_test(test_real_elfloader),
		cmocka_unit_test(test_real_prefixes),
		cmocka_unit_test(test_host_binary),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
