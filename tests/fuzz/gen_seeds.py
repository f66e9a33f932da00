#!/usr/bin/env python3
"""gen_seeds.py OUT_DIR SOURCE_DIR FIXTURE_DIR [SHARED_FIXTURES] — write the fuzzers' seed corpora and
regression inputs.

Seeds come from the unit tests' own inputs (the C string literals of tests/unit/test_*.c and the fixtures'
libtest text, macros such as SHA_A expanded), from a few hand-written cases below, from small ELF /
multiboot images built here byte by byte (as tests/unit/test_detect.c builds them), from the built
test fixtures (FIXTURE_DIR) and, when that folder exists, from the real Unikraft images, their console
text and their .config files in SHARED_FIXTURES (../shared/fixtures, as test_detect uses). Regression inputs (tests/fuzz/regress/HARNESS/NAME.txt, or NAME.hex for
binary ones: hex digits, whitespace and '#' comments ignored) are copied or decoded into
OUT_DIR/regress/HARNESS/. Nothing binary is committed; everything here is rebuilt by the build.
"""
import hashlib
import os
import re
import shutil
import struct
import sys

out_dir, src_dir, fixture_dir = sys.argv[1:4]
shared_dir = sys.argv[4] if len(sys.argv) > 4 else ''


def shared_files(suffix_ok):
    """(name, bytes) of the files under SHARED_FIXTURES that suffix_ok(name) accepts, at most 1 MiB each."""
    if not shared_dir or not os.path.isdir(shared_dir):
        return
    for root, _, names in sorted(os.walk(shared_dir)):
        for name in sorted(names):
            p = os.path.join(root, name)
            if suffix_ok(name) and os.path.getsize(p) <= 1 << 20:
                with open(p, 'rb') as f:
                    yield name, f.read()

# ---- C string literals of the unit tests ----

_ESC = {'n': '\n', 't': '\t', 'r': '\r', '0': '\0', '\\': '\\', '"': '"', "'": "'", 'a': '\a', 'b': '\b',
        'f': '\f', 'v': '\v', '?': '?'}


def c_unescape(s):
    out, i = bytearray(), 0
    while i < len(s):
        ch = s[i]
        if ch != '\\':
            out += ch.encode()
            i += 1
            continue
        nxt = s[i + 1]
        if nxt == 'x':
            m = re.match(r'[0-9a-fA-F]+', s[i + 2:])
            out.append(int(m.group(0), 16) & 0xff)
            i += 2 + len(m.group(0))
        elif nxt in '01234567':
            m = re.match(r'[0-7]{1,3}', s[i + 1:])
            out.append(int(m.group(0), 8) & 0xff)
            i += 1 + len(m.group(0))
        else:
            out += _ESC.get(nxt, nxt).encode()
            i += 2
    return bytes(out)


_LIT = r'"(?:[^"\\\n]|\\.)*"'


def c_strings(path, macros):
    """Runs of adjacent string literals (and string macros) in a C file, each as one bytes value."""
    text = open(path, encoding='utf-8').read()
    text = re.sub(r'/\*.*?\*/', ' ', text, flags=re.S)
    text = re.sub(r'\\\n', ' ', text)
    for m in re.finditer(r'^\s*#\s*define\s+(\w+)\s+((?:' + _LIT + r'\s*)+)$', text, flags=re.M):
        macros[m.group(1)] = b''.join(c_unescape(x[1:-1]) for x in re.findall(_LIT, m.group(2)))
    text = re.sub(r'^\s*#.*$', ' ', text, flags=re.M)
    token = _LIT + '|' + '|'.join(re.escape(k) for k in sorted(macros, key=len, reverse=True)) \
        if macros else _LIT
    runs = []
    for m in re.finditer(r'(?:(?:' + token + r')\s*)+', text):
        parts = re.findall(token, m.group(0))
        if not any(p.startswith('"') for p in parts):
            continue
        runs.append(b''.join(c_unescape(p[1:-1]) if p.startswith('"') else macros[p] for p in parts))
    return runs


def unit(name):
    return os.path.join(src_dir, 'tests', 'unit', name)


def write(harness, data, tag=''):
    d = os.path.join(out_dir, 'seeds', harness)
    os.makedirs(d, exist_ok=True)
    name = (tag + '-' if tag else '') + hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)


for h in ('http', 'runspec', 'testparse', 'detect', 'config'):
    shutil.rmtree(os.path.join(out_dir, 'seeds', h), ignore_errors=True)
    os.makedirs(os.path.join(out_dir, 'seeds', h))

# ---- http: the requests of test_http.c / test_console.c, plus a few shapes they do not write ----

METHODS = (b'GET ', b'HEAD ', b'PUT ', b'POST ', b'DELETE ', b'OPTIONS ')
for f in ('test_http.c', 'test_console.c', 'http_testlib.c'):
    for s in c_strings(unit(f), {}):
        if s.startswith(METHODS) and b'HTTP/1.' in s:
            write('http', s, 'unit')
for s in (
    b'GET /plain HTTP/1.1\r\nHost: x\r\n\r\n',
    b'GET /q?a=1&b=%41%42&offset=7 HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\n\r\n',
    b'POST /s HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello',
    b'POST /s HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    b'PUT /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc',
    b'PUT /p HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc',
    b'GET /d HTTP/1.1\r\n\r\nGET /d HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nConnection: close\r\n\r\n',
    b'HEAD /x HTTP/1.1\r\nAuthorization: Bearer 0123456789abcdef\r\n\r\n',
    b'GET /%zz HTTP/1.1\r\n\r\n',
    b'GET http://h/abs?x HTTP/1.0\r\n\r\n',
    b'POST / HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n',
    b'GET /D HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n',
    b'GET /' + b'u' * 9000 + b' HTTP/1.1\r\n\r\n',  # request target over HTTP_MAX_URL
    b'GET / HTTP/1.1\r\nAuthorization: Bearer ' + b't' * 5000 + b'\r\n\r\n',
):
    write('http', s, 'hand')

# ---- runspec: the JSON of test_runspec.c, plus the run request the client sends ----

for s in c_strings(unit('test_runspec.c'), {}):
    if s.lstrip().startswith((b'{', b'[')):
        write('runspec', s, 'unit')
SHA = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
write('runspec', ('{"image":"%s","platform":"qemu","args":["a","b"],"uk_params":["x.y=1"],"memory_mb":64,'
                  '"vcpus":1,"timeout_s":30,"labels":{"ci/job":"1"},"success_code":41}' % SHA).encode(), 'hand')
write('runspec', ('{"image":"%s","loader":"%s","name":"t.elf","accel":"tcg","machine":"microvm"}'
                  % (SHA, SHA)).encode(), 'hand')
# Just past the limits: 1025 arguments; 64 KiB of argument bytes.
write('runspec', ('{"image":"%s","args":[%s]}' % (SHA, ','.join(['""'] * 1025))).encode(), 'hand-limit')
write('runspec', ('{"image":"%s","args":["%s"],"uk_params":["a=%s"]}'
                  % (SHA, 'a' * 40000, 'b' * 26000)).encode(), 'hand-limit')

# ---- testparse: the console texts of test_testparse.c and the fixtures' libtest text ----

macros = {}
for path in (os.path.join(src_dir, 'tests', 'fixtures', 'common', 'libtest_text.h'), unit('test_testparse.c')):
    for s in c_strings(path, macros):
        if len(s) >= 8:
            write('testparse', s, 'unit')
for v in macros.values():
    write('testparse', v, 'fixture')
# Lines past TESTPARSE_LINE_MAX (4096): a long test name, and a long line split around a result.
write('testparse', b'running 2 tests\ntest ' + b'n' * 5000 + b' ... ok\ntest b ... FAILED\n\n' +
      b'x' * 9000 + b'\ntest result: FAILED. 1 passed; 1 failed; 0 ignored\n', 'hand-long')
for name, data in shared_files(lambda n: n.endswith('.console.txt')):
    write('testparse', data, 'shared')
# Real libtest output in every format (pretty, terse, JSON, --nocapture) of a Rust test binary.
_data = os.path.join(src_dir, 'tests', 'unit', 'data')
for n in sorted(os.listdir(_data)):
    if n.startswith('libtest_') and n.endswith('.txt') and n != 'libtest_src.rs.txt':
        with open(os.path.join(_data, n), 'rb') as f:
            write('testparse', f.read(), 'capture')

# ---- config: runnerd.conf shapes (the keys are runnerd's long options) ----

for s in (
    b'# runnerd.conf\nsocket = /tmp/x.sock\ndata-dir = /tmp/d\nlog-level = debug\n',
    b'timeout = 300\nmax-concurrent = 4\nmax-queued = 1000\nconsole-cap = 16777216\n'
    b'max-image-size = 1073741824\nconsole-grace-ms = 2000\nidle-timeout = 0\n',
    b'listen = tcp://127.0.0.1:7878\ntoken-file = /etc/ukrun/token\nlog = /tmp/r.log\n',
    b'[section]\nignored = yes\n\n; comment\ntimeout=5\n',
    b'\xef\xbb\xbftimeout: 7\n  continued\nmax-queued = -1\nbogus = 1\n',
):
    write('config', s, 'hand')
for name, data in shared_files(lambda n: n.endswith('.config')):
    write('config', data[:4096], 'shared')  # Kconfig files: KEY=value lines, not runnerd's keys
    break

# ---- detect: small images built byte by byte, plus the built fixtures ----

MB_MAGIC = 0x1BADB002


def multiboot(buf, off, flags=0x00010003):
    struct.pack_into('<III', buf, off, MB_MAGIC, flags, (-(MB_MAGIC + flags)) & 0xffffffff)


def elf64(etype=2, machine=62, entry=0x401000, interp=False, note=0, section=None, size=4096):
    b = bytearray(size)
    phdrs = [struct.pack('<IIQQQQQQ', 1, 5, 0, 0, 0, size, size, 4096)]
    if interp:
        b[512:512 + 28] = b'/lib64/ld-linux-x86-64.so.2\0'
        phdrs.append(struct.pack('<IIQQQQQQ', 3, 4, 512, 0, 0, 28, 28, 1))
    if note:
        b[600:620] = struct.pack('<III4sI', 4, 4, note, b'Xen\0', 0x100000)
        phdrs.append(struct.pack('<IIQQQQQQ', 4, 4, 600, 0, 0, 20, 20, 4))
    shoff = shnum = shstrndx = 0
    if section:
        strtab = b'\0.shstrtab\0' + section.encode() + b'\0'
        b[700:700 + len(strtab)] = strtab
        sh = [bytes(64), struct.pack('<IIQQQQIIQQ', 1, 3, 0, 0, 700, 200, 0, 0, 1, 0),
              struct.pack('<IIQQQQIIQQ', 11, 1, 0, 0, 0, 8, 0, 0, 1, 0)]
        b[1024:1024 + 192] = b''.join(sh)
        shoff, shnum, shstrndx = 1024, 3, 1
    b[64:64 + 56 * len(phdrs)] = b''.join(phdrs)
    b[0:64] = struct.pack('<4sBBBB8sHHIQQQIHHHHHH', b'\x7fELF', 2, 1, 1, 0, bytes(8), etype, machine, 1,
                          entry, 64, shoff, 0, 64, 56, len(phdrs), 64 if section else 0, shnum, shstrndx)
    return b


def elf32_wrapper():
    b = bytearray(12288)
    b[0:52] = struct.pack('<4sBBBB8sHHIIIIIHHHHHH', b'\x7fELF', 1, 1, 1, 0, bytes(8), 2, 3, 1, 0x100000,
                          52, 0, 0, 52, 32, 1, 0, 0, 0)
    b[52:84] = struct.pack('<IIIIIIII', 1, 0x1000, 0x100000, 0x100000, 0x2000, 0x2000, 5, 0x1000)
    multiboot(b, 0x1000)
    b[0x1100:0x1100 + 18] = b'Powered by Unikraft'[:18]
    return b


plain = bytearray(8192)
multiboot(plain, 0)
write('detect', bytes(plain), 'mb')
write('detect', elf64(), 'static')
write('detect', elf64(etype=3), 'static-pie')
write('detect', elf64(interp=True), 'dynamic')
write('detect', elf64(note=18), 'pvh')
write('detect', elf64(note=1), 'xen-pv')
write('detect', elf64(section='.uk_inittab'), 'uk-section')
write('detect', elf64(machine=183), 'aarch64')
write('detect', bytes(elf32_wrapper()), 'elf32-wrapper')
write('detect', b'#!/bin/sh\necho not an image\n', 'script')
if os.path.isdir(fixture_dir):
    for name in sorted(os.listdir(fixture_dir)):
        p = os.path.join(fixture_dir, name)
        if os.path.isfile(p) and os.path.getsize(p) <= 256 * 1024:
            with open(p, 'rb') as f:
                write('detect', f.read(), 'fixture-' + name)
for name, data in shared_files(lambda n: '.' not in n):
    write('detect', data, 'shared-' + name)

# ---- regression inputs ----

reg_src = os.path.join(src_dir, 'tests', 'fuzz', 'regress')
shutil.rmtree(os.path.join(out_dir, 'regress'), ignore_errors=True)
for h in ('http', 'runspec', 'testparse', 'detect', 'config'):
    d = os.path.join(out_dir, 'regress', h)
    os.makedirs(d)
    sd = os.path.join(reg_src, h)
    for name in sorted(os.listdir(sd)) if os.path.isdir(sd) else ():
        with open(os.path.join(sd, name), 'rb') as f:
            data = f.read()
        if name.endswith('.hex'):
            text = re.sub(rb'#[^\n]*', b'', data)
            data = bytes.fromhex(re.sub(rb'\s+', b'', text).decode())
            name = name[:-4]
        elif not name.endswith('.txt'):
            continue
        with open(os.path.join(d, name), 'wb') as f:
            f.write(data)
