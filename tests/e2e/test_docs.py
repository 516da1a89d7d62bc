"""herd(1), herd.json(5) and the shell completions, against the sources they describe.

The man pages are generated from README.md by scripts/manpages.py at build time: they must be
what the README says now (no stale build), render without groff warnings, and name every
command and flag of the CLI (src/cmd.c's usage strings, the getopt options of src/cli.c and
src/main.c) and every config key (the key lists of src/cfg*.c). `cmake --install` puts them,
and the completions, where man, bash-completion and zsh look. The bash completion is driven
by a real bash through COMP_WORDS/COMP_CWORD: commands, each command's flags, flag values, and
service names asked of a running daemon."""
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import unittest

from harness import HERD_BIN, SuiteTest, main

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILD = os.path.dirname(os.path.abspath(HERD_BIN))
BASH_COMPLETION = os.path.join(REPO, "config", "completion", "herd.bash")
ZSH_COMPLETION = os.path.join(REPO, "config", "completion", "_herd")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def plain(roff):
    """The roff source's words as text: fonts dropped, escapes undone."""
    s = re.sub(r"\\f[BIRP]", "", roff)
    s = s.replace("\\-", "-").replace("\\e", "\\").replace("\\&", "")
    return s


def commands():
    """{name: usage} of the CLI's commands (src/cmd.c)."""
    src = read(os.path.join(REPO, "src", "cmd.c"))
    out = {}
    for m in re.finditer(r'\[CMD_\w+\]\s*=\s*\{\s*"([a-z]+)",\s*((?:"[^"]*"\s*)+),', src):
        out[m.group(1)] = "".join(re.findall(r'"([^"]*)"', m.group(2)))
    return out


def flags_of(usage):
    return set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", usage))


def getopt_flags(path):
    src = read(path)
    longs = {"--" + m for m in re.findall(r'\{"([a-z][a-z-]*)",\s*(?:no|required|optional)_argument', src)}
    return longs | set(re.findall(r'strcmp\(argv\[i\], "(--?[a-z][a-z-]*)"\)', src))


def daemon_flags():
    return getopt_flags(os.path.join(REPO, "src", "main.c")) - {"--version", "-V", "--help", "-h"}


def config_keys():
    keys = set()
    for name in os.listdir(os.path.join(REPO, "src")):
        if re.match(r"cfg.*\.c$", name):
            src = read(os.path.join(REPO, "src", name))
            for m in re.finditer(r"static const char \*const \w*keys\w*\[\] = \{(.*?)\};", src, re.S):
                keys |= set(re.findall(r'"([a-z_]+)"', m.group(1)))
    return keys


class ManPages(unittest.TestCase):
    def setUp(self):
        self.man1 = os.path.join(BUILD, "man", "herd.1")
        self.man5 = os.path.join(BUILD, "man", "herd.json.5")
        for p in (self.man1, self.man5):
            self.assertTrue(os.path.exists(p), "%s not built (the `man` target of CMakeLists.txt)" % p)

    def test_generated_from_the_readme_as_it_is(self):
        version = subprocess.run([HERD_BIN, "--version"], capture_output=True, text=True).stdout.split()[1]
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["python3", os.path.join(REPO, "scripts", "manpages.py"), os.path.join(REPO, "README.md"),
                            tmp, version], check=True)
            for name in ("herd.1", "herd.json.5"):
                self.assertEqual(read(os.path.join(tmp, name)), read(os.path.join(BUILD, "man", name)),
                                 "%s is not what README.md makes of it now" % name)

    def test_render_without_warnings(self):
        for p in (self.man1, self.man5):
            r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", p], capture_output=True, text=True)
            bad = [l for l in r.stderr.splitlines() if not re.search(r"cannot adjust line|can't break line", l)]
            self.assertEqual(bad, [], p)
            text = subprocess.run(["man", "-l", p], capture_output=True, text=True,
                                  env=dict(os.environ, MANWIDTH="80")).stdout
            self.assertIn("NAME", text)
            self.assertIn("SEE ALSO", text)

    def test_every_command_and_flag_in_herd_1(self):
        text = plain(read(self.man1))
        cmds = commands()
        self.assertGreater(len(cmds), 15)
        section = text.split(".SH COMMANDS", 1)[1].split(".SH ", 1)[0]
        missing = [c for c in cmds if not re.search(r"herd (\S+ )*?(\S+\|)?%s\b" % c, section)]
        self.assertEqual(missing, [], "commands not in herd(1)'s COMMANDS")
        flags = set()
        for usage in cmds.values():
            flags |= flags_of(usage)
        flags |= getopt_flags(os.path.join(REPO, "src", "cli.c")) | getopt_flags(os.path.join(REPO, "src", "main.c"))
        self.assertIn("--watch", flags)
        missing = sorted(f for f in flags if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(f), text))
        self.assertEqual(missing, [], "flags not in herd(1)")
        for env in ("HERD_SOCKET", "NO_COLOR"):
            self.assertIn(env, text)

    def test_every_config_key_in_herd_json_5(self):
        text = plain(read(self.man5))
        keys = config_keys()
        for k in ("name", "command", "ready", "watchdog", "depends_on", "partition", "identity_file"):
            self.assertIn(k, keys)
        missing = sorted(k for k in keys if not re.search(r"(?<![\w])%s(?![\w])" % k, text))
        self.assertEqual(missing, [], "config keys not in herd.json(5)")

    def test_cmake_install(self):
        with tempfile.TemporaryDirectory() as prefix:
            r = subprocess.run(["cmake", "--install", BUILD, "--prefix", prefix], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            for rel in ("bin/herd", "share/man/man1/herd.1", "share/man/man5/herd.json.5",
                        "share/bash-completion/completions/herd", "share/zsh/vendor-completions/_herd"):
                self.assertTrue(os.path.exists(os.path.join(prefix, rel)), rel)
            r = subprocess.run(["man", "-M", os.path.join(prefix, "share", "man"), "5", "herd.json"],
                               capture_output=True, text=True, env=dict(os.environ, MANWIDTH="80", MANPAGER="cat"))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("watchdog", r.stdout)


class Completion(SuiteTest):
    """Run the bash completion function as bash would, with a daemon to ask for names."""

    def complete(self, *words):
        """COMPREPLY for the command line `words`, the cursor at the end of the last one."""
        words = (HERD_BIN,) + words
        script = "source %s; COMP_WORDS=(%s); COMP_CWORD=%d; _herd; printf '%%s\\n' \"${COMPREPLY[@]}\"" % (
            shlex.quote(BASH_COMPLETION), " ".join(shlex.quote(w) for w in words), len(words) - 1)
        env = dict(self.d.env)
        env.pop("HERD_SOCKET", None)
        r = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True, text=True,
                           env=env, timeout=30)
        self.assertEqual(r.stderr, "")
        return set(l for l in r.stdout.splitlines() if l)

    def test_bash(self):
        self.d.write_config([{"name": n, "command": ["sleep", "1000"], "ready_after": 0}
                             for n in ("web-1", "web-2", "db")])
        self.d.start()
        cmds = commands()
        named = {c for c in cmds}
        self.assertEqual(self.complete(""), named)
        self.assertEqual(self.complete("st"), {"status", "start", "stop"})
        self.assertEqual(self.complete("--"), {"--socket", "--state-dir", "--version", "--help"})
        # Each command's flags: at least those its usage names (the daemon's: main.c's options).
        for c, usage in cmds.items():
            want = daemon_flags() if c == "daemon" else flags_of(usage)
            if not want:
                continue
            got = self.complete(c, "-")
            self.assertTrue(want <= got, "%s: %s not offered (got %s)" % (c, sorted(want - got), sorted(got)))
        self.assertEqual(self.complete("daemon", "--log-level", ""), {"debug", "info", "warn", "error"})
        self.assertEqual(self.complete("status", "--state", "HE"), {"HEALTHY"})
        # Service names, from the daemon this command line names (no HERD_SOCKET here).
        sock = ["--socket", self.d.sock]
        self.assertEqual(self.complete(*sock, "start", "we"), {"web-1", "web-2"})
        self.assertEqual(self.complete("--state-dir", self.d.state, "stop", "web-1", ""), {"web-1", "web-2", "db"})
        self.assertEqual(self.complete(*sock, "events", "--service", "d"), {"db"})
        self.assertEqual(self.complete(*sock, "logs", "-n", "5", ""), {"web-1", "web-2", "db"})
        self.assertEqual(self.complete(*sock, "logs", "db", ""), set())
        self.assertEqual(self.complete(*sock, "help", "re"), {"replace", "restart", "reload"})
        self.assertEqual(self.complete(*sock, "config", ""), {"check"})
        # No daemon there: no names, and no noise.
        self.assertEqual(self.complete("--socket", "/nonexistent/herd.sock", "start", ""), set())

    @unittest.skipUnless(shutil.which("zsh"), "zsh not installed")
    def test_zsh_parses_and_knows_every_flag(self):
        r = subprocess.run(["zsh", "-n", ZSH_COMPLETION], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        text = read(ZSH_COMPLETION)
        for c, usage in commands().items():
            self.assertIn("'%s:" % c, text)
            for f in (daemon_flags() if c == "daemon" else flags_of(usage)):
                self.assertRegex(text, r"'(\([^)]*\))?\{?[^']*%s[\[,}']" % re.escape(f), "%s %s" % (c, f))


if __name__ == "__main__":
    main()
