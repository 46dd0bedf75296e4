#!/usr/bin/env python3
"""Turns a command line of a systemd unit into the argv systemd would run.

    unitcmd.py UNIT KEY INSTANCE ENVFILE [--bin OLD=NEW]... [--sysconf DIR]

KEY is ExecStart, ExecStartPre or ExecStopPost (the unit must have exactly
one).  Prints, NUL-separated: the line's prefix flags ("-" etc., possibly
empty), then argv.  Environment: the unit's Environment= lines, then
ENVFILE in place of its EnvironmentFile= (whose path, after %i, must be
SYSCONF/layerfs/INSTANCE.conf), as systemd layers them; --env prints
that environment (KEY=VALUE, NUL-separated) instead.

Implements what systemd.service(5) "COMMAND LINES" and systemd.exec(5)
EnvironmentFile= specify, for the subset a unit may use here: %i %I %% %n
specifiers, quoting, "${VAR}" (one argument, also inside a word), "$VAR"
as a word (split at whitespace), "$$" (a literal "$").  Anything outside
that subset is an error, never a silent guess: tests/systemd/boot.sh
checks the same unit under a real systemd.
"""
import argparse
import re
import sys

SPECIFIERS = set("iIn%")


def die(msg):
    sys.stderr.write("unitcmd: %s\n" % msg)
    sys.exit(2)


def read_unit(path):
    """{section: [(key, value), ...]} with continuation lines joined."""
    sections, cur, pending = {}, None, ""
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if pending:
                line = pending + line.lstrip()
                pending = ""
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            s = line.strip()
            if not s or s[0] in "#;":
                continue
            if s.startswith("[") and s.endswith("]"):
                cur = s[1:-1]
                sections.setdefault(cur, [])
                continue
            if "=" not in s or cur is None:
                die("%s: cannot parse %r" % (path, s))
            k, v = s.split("=", 1)
            sections[cur].append((k.strip(), v.strip()))
    return sections


def specifiers(s, instance, unitname):
    def sub(m):
        c = m.group(1)
        if c not in SPECIFIERS:
            die("unsupported specifier %%%s" % c)
        return {"i": instance, "I": instance, "n": unitname, "%": "%"}[c]
    return re.sub(r"%(.)", sub, s)


def split_words(s):
    """systemd.syntax(7) quoting: words, "double" and 'single' quotes.
    Returns [(text, quoted)] where text keeps $ references unexpanded."""
    words, i, n = [], 0, len(s)
    while i < n:
        while i < n and s[i] in " \t":
            i += 1
        if i >= n:
            break
        if s[i] in "\"'":
            q = s[i]
            j = s.find(q, i + 1)
            if j < 0:
                die("unterminated quote in %r" % s)
            text = s[i + 1:j]
            if "\\" in text:
                die("backslash escapes are not supported here: %r" % text)
            words.append((text, True))
            i = j + 1
            if i < n and s[i] not in " \t":
                die("a quote must end a word in %r" % s)
            continue
        j = i
        while j < n and s[j] not in " \t":
            if s[j] in "\"'\\":
                die("quotes/backslashes inside an unquoted word: %r" % s[i:])
            j += 1
        words.append((s[i:j], False))
        i = j
    return words


def expand(words, env):
    out = []
    for text, quoted in words:
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", text)
        if m and not quoted:
            out.extend(env.get(m.group(1), "").split())
            continue
        res, i = "", 0
        while i < len(text):
            if text.startswith("$$", i):
                res += "$"
                i += 2
            elif text.startswith("${", i):
                j = text.find("}", i)
                if j < 0:
                    die("unterminated ${ in %r" % text)
                res += env.get(text[i + 2:j], "")
                i = j + 1
            elif text[i] == "$":
                die("a bare $VAR inside a word is not supported: %r" % text)
            else:
                res += text[i]
                i += 1
        out.append(res)
    return out


def parse_assignments(value):
    """Environment= value: space-separated, optionally quoted, VAR=VALUE."""
    env = {}
    for text, _ in split_words(value):
        if "=" not in text:
            die("bad Environment= item %r" % text)
        k, v = text.split("=", 1)
        env[k] = v
    return env


def read_envfile(path):
    env = {}
    with open(path, encoding="utf-8") as f:
        data = f.read()
    i, n = 0, len(data)
    while i < n:
        j = data.find("\n", i)
        j = n if j < 0 else j
        line = data[i:j]
        i = j + 1
        s = line.strip(" \t\r")
        if not s or s[0] in "#;" or "=" not in s:
            continue
        k, v = s.split("=", 1)
        k, v = k.strip(), v.lstrip(" \t")
        if v.startswith("'"):
            while "'" not in v[1:]:
                if i >= n:
                    die("%s: unterminated '" % path)
                j = data.find("\n", i)
                j = n if j < 0 else j
                v += "\n" + data[i:j]
                i = j + 1
            end = v.index("'", 1)
            env[k] = v[1:end]
        elif v.startswith('"'):
            res, p = "", 1
            while True:
                if p >= len(v):
                    die("%s: unterminated \" (multi-line values unsupported)" % path)
                c = v[p]
                if c == '"':
                    break
                if c == "\\" and p + 1 < len(v) and v[p + 1] in '"\\`$':
                    res += v[p + 1]
                    p += 2
                    continue
                res += c
                p += 1
            env[k] = res
        else:
            if "\\" in v:
                die("%s: backslashes in unquoted values are not supported" % path)
            env[k] = v.rstrip(" \t\r")
    return env


def main():
    ap = argparse.ArgumentParser(description="see the module docstring")
    ap.add_argument("unit")
    ap.add_argument("key")
    ap.add_argument("instance")
    ap.add_argument("envfile")
    ap.add_argument("--bin", action="append", default=[],
                    help="OLD=NEW: run NEW where the unit names OLD (repeatable)")
    ap.add_argument("--sysconf", help="the unit's EnvironmentFile= must be under this")
    ap.add_argument("--env", action="store_true",
                    help="print the environment (KEY=VALUE) instead of the command")
    a = ap.parse_args()
    unit, key, instance, envfile = a.unit, a.key, a.instance, a.envfile
    sec = read_unit(unit)
    svc = sec.get("Service")
    if svc is None:
        die("no [Service] section")
    name = unit.rsplit("/", 1)[-1].replace("@.", "@%s." % instance)
    env = {}
    envfiles = []
    for k, v in svc:
        if k == "Environment":
            env.update(parse_assignments(specifiers(v, instance, name)))
        elif k == "EnvironmentFile":
            envfiles.append(specifiers(v, instance, name))
    if len(envfiles) != 1:
        die("expected exactly one EnvironmentFile=, got %d" % len(envfiles))
    want = envfiles[0]
    if want.startswith("-"):
        die("EnvironmentFile= must not be optional ('-'): a missing config must fail")
    if a.sysconf and not want.startswith(a.sysconf.rstrip("/") + "/"):
        die("EnvironmentFile=%s is not under %s" % (want, a.sysconf))
    expect_tail = "/layerfs/%s.conf" % instance
    if not want.endswith(expect_tail):
        die("EnvironmentFile=%s does not end in %s" % (want, expect_tail))
    env.update(read_envfile(envfile))
    if a.env:
        sys.stdout.write("".join("%s=%s\0" % kv for kv in sorted(env.items())))
        return
    lines = [v for k, v in svc if k == key]
    if len(lines) != 1:
        die("expected exactly one %s=, got %d" % (key, len(lines)))
    line = specifiers(lines[0], instance, name)
    m = re.match(r"[-@:+!]*", line)
    flags, line = m.group(0), line[m.end():]
    # %n: the unit's name, as systemd gives it
    if "@" in flags or ";" in line.split():
        die("@ prefixes and multiple commands are not supported")
    argv = expand(split_words(line), env)
    if not argv or not argv[0].startswith("/"):
        die("%s: the command must be an absolute path" % key)
    for b in a.bin:
        old, new = b.split("=", 1)
        if argv[0] == old:
            argv[0] = new
    sys.stdout.write("\0".join([flags] + argv) + "\0")


if __name__ == "__main__":
    main()
