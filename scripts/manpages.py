#!/usr/bin/env python3
"""Generate herd(1) and herd.json(5) from README.md: one source, no drift.

The manual's sections are converted as they are (the Markdown subset README.md uses:
headings, paragraphs, tables, fenced code, bullet lists, **bold**, `code`, [links](...))
to man(7) roff. tests/e2e/test_docs.py checks that every CLI command and flag (src/cmd.c,
src/cli.c, src/main.c) appears in herd(1) and every config key (src/cfg*.c) in
herd.json(5).

Usage: manpages.py README.md OUTDIR [VERSION]
"""
import os
import re
import sys

# Which sections of the README go where (## headings; "## A > ### B" picks one subsection).
PAGES = {
    "herd.1": {
        "title": ("HERD", "1", "herd - supervise long-lived services: local processes, Slurm jobs, ssh tunnels"),
        "synopsis": ["herd [--socket PATH] [--state-dir DIR] COMMAND [ARGS]",
                     "herd daemon [--config DIR] [OPTIONS]"],
        "sections": [("DESCRIPTION", "#intro"), ("CONCEPTS", "Concepts"), ("COMMANDS", "CLI"),
                     ("CONTROL API", "HTTP API"), ("MONITORING", "Monitoring: metrics, health, liveness, systemd"),
                     ("WHEN HERD ITSELF DIES", "When herd itself dies"), ("FAILURES", "How herd behaves on failure"),
                     ("GUARANTEES UNDER FAULTS", "What herd guarantees under faults"),
                     ("FILES", "Files and state")],
        "see_also": "herd.json(5), systemd-notify(1), sd_notify(3), ssh(1), slurmrestd(8)",
    },
    "herd.json.5": {
        "title": ("HERD.JSON", "5", "herd.json - herd's service, check, endpoint, ssh host, Slurm and job queue configuration"),
        "synopsis": ["herd daemon --config DIR    (every DIR/*.json)",
                     "herd config check DIR"],
        "sections": [("CONFIGURATION", "Configuration"), ("HEALTH CHECKS", "Health checks"),
                     ("READINESS BY NOTIFY", "Monitoring: metrics, health, liveness, systemd > "
                      "Readiness by notify, and the watchdog"),
                     ("ENDPOINTS AND PORTS", "Endpoints and ports"), ("SSH HOSTS AND TUNNELS", "ssh hosts and tunnels"),
                     ("START ORDER", "Start order"), ("SLURM", "Slurm"), ("JOBS AND WORK QUEUES", "Jobs and work queues")],
        "see_also": "herd(1)",
    },
}


def split_sections(text):
    """{"#intro": lines before the first ##, "Title": lines, "Title > Sub": lines}."""
    out, cur, sub = {"#intro": []}, "#intro", None
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        m = None if fenced else re.match(r"^(#{1,3}) (.*)$", line)
        if m and len(m.group(1)) == 1:
            continue  # the document's title
        if m and len(m.group(1)) == 2:
            cur, sub = m.group(2).strip(), None
            out[cur] = []
            continue
        if m and len(m.group(1)) == 3:
            sub = "%s > %s" % (cur, m.group(2).strip())
            out[sub] = []
        out[cur].append(line)
        if sub and not (m and len(m.group(1)) == 3):
            out[sub].append(line)
    return out


def esc(s):
    """Plain text to roff: backslashes, hyphens in words stay hyphens, dashes as \\-."""
    s = s.replace("\\", "\\e")
    # Non-ASCII characters as groff's named Unicode escapes: the page reads the same whatever
    # the input encoding man(1) assumes.
    return "".join(c if ord(c) < 128 else "\\[u%04X]" % ord(c) for c in s)


def inline(s):
    """Markdown inline markup to roff font changes."""
    parts = re.split(r"(`[^`]*`)", s)
    out = []
    for p in parts:
        if p.startswith("`") and p.endswith("`") and len(p) >= 2:
            out.append("\\fB" + esc(p[1:-1]).replace("-", "\\-") + "\\fR")
            continue
        p = esc(p)
        p = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", p)  # links: their text
        p = re.sub(r"\*\*([^*]+)\*\*", r"\\fB\1\\fR", p)
        p = re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"\\fI\1\\fR", p)
        out.append(p)
    return "".join(out)


def line_safe(s):
    """A text line must not begin with a control character."""
    return "\\&" + s if s[:1] in (".", "'") else s


def table_cells(line):
    cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return [c.strip().replace("\\|", "|") for c in cells]


def convert(lines):
    """Markdown lines to roff lines."""
    out, i, n = [], 0, len(lines)
    while i < n:
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if line.startswith("```"):
            i += 1
            out += [".PP", ".RS 4", ".nf"]
            while i < n and not lines[i].startswith("```"):
                out.append(line_safe(esc(lines[i])))
                i += 1
            out += [".fi", ".RE"]
            i += 1
            continue
        m = re.match(r"^### (.*)", line)
        if m:
            out += [".SS " + inline(m.group(1))]
            i += 1
            continue
        if line.startswith("|"):
            rows = []
            while i < n and lines[i].startswith("|"):
                rows.append(table_cells(lines[i]))
                i += 1
            head, body = rows[0], [r for r in rows[1:] if not all(re.match(r"^:?-+:?$", c) for c in r)]
            # Each row as a tagged paragraph: the first cell is the tag, the others follow,
            # labelled by their column's header when there are more than two.
            for r in body:
                out += [".TP", line_safe(inline(r[0]))]
                # The middle columns (type, default, labels ...) labelled, then the last one.
                mid = ["%s: %s" % (h, c) for h, c in zip(head[1:-1], r[1:-1]) if c]
                if mid:
                    out += [line_safe(inline("(" + "; ".join(mid) + ")")), ".br"]
                if len(r) > 1 and r[-1]:
                    out.append(line_safe(inline(r[-1])))
            continue
        if re.match(r"^\s*[-*] ", line):
            while i < n and re.match(r"^\s*[-*] ", lines[i]):
                item = [re.sub(r"^\s*[-*] ", "", lines[i])]
                i += 1
                while i < n and lines[i].startswith("  ") and not re.match(r"^\s*[-*] ", lines[i]):
                    item.append(lines[i].strip())
                    i += 1
                out += [".IP \\(bu 2", line_safe(inline(" ".join(item)))]
            continue
        para = []
        while (i < n and lines[i].strip() and not lines[i].startswith(("```", "|", "#"))
               and not re.match(r"^\s*[-*] ", lines[i])):
            para.append(lines[i].strip())
            i += 1
        out += [".PP", line_safe(inline(" ".join(para)))]
    return out


def page(name, spec, sections, version):
    title, sec, what = spec["title"]
    out = ['.\\" Generated by scripts/manpages.py from README.md: edit the README, not this file.',
           '.TH %s %s "" "herd %s" "herd manual"' % (title, sec, version),
           ".nh", ".ad l",  # no hyphens in keys and flags, no stretched lines of long words
           ".SH NAME",
           line_safe(esc(what).replace(" - ", " \\- ", 1)), ".SH SYNOPSIS"]
    for s in spec["synopsis"]:
        out += [".PP", "\\fB" + esc(s).replace("-", "\\-") + "\\fR"]
    for heading, key in spec["sections"]:
        if key not in sections:
            sys.exit("manpages.py: README.md has no section %r (for %s %s)" % (key, name, heading))
        out += [".SH " + heading] + convert(sections[key])
    out += [".SH SEE ALSO", esc(spec["see_also"])]
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    readme, outdir = sys.argv[1], sys.argv[2]
    version = sys.argv[3] if len(sys.argv) > 3 else ""
    with open(readme, encoding="utf-8") as f:
        sections = split_sections(f.read())
    os.makedirs(outdir, exist_ok=True)
    for name, spec in PAGES.items():
        text = page(name, spec, sections, version)
        path = os.path.join(outdir, name)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)


if __name__ == "__main__":
    main()
