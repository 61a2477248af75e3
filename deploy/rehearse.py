#!/usr/bin/env python3
"""Runs a systemd unit of deploy/systemd/ as systemd would start it (its ExecStart, Environment=, EnvironmentFile= and
LoadCredential= lines), with its paths moved under a scratch root, against the Dataverse emulator instead of Dynamics.

It rehearses a production configuration: the configuration file is copied with only what a rehearsal must change
(the organisations' authority host and CA file, the store path, and the SMTP relay, pointed at a closed loopback port
so nothing leaves the machine). Used by deploy/check.sh in CI; see docs/runbook.md, "Rehearsing a production
configuration against the emulator", for doing the same by hand.

Standard library only. Exits with the unit command's status.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

ETC = "/etc/hlf-sync"
STATE = "/var/lib/hlf-sync"
BIN = "/usr/local/bin/"


def parse_unit(path):
    """The [Service] section's settings as (key, value) pairs, in order (keys may repeat)."""
    section, settings = None, []
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section == "Service" and "=" in line:
            key, value = line.split("=", 1)
            settings.append((key.strip(), value.strip()))
    return settings


def rehearsal_config(text, emulator, ca_file, state_dir):
    """The production configuration with the rehearsal's changes, each line marked."""
    out = []
    for line in text.splitlines():
        if line.strip().startswith("smtp_host"):
            out.append('smtp_host = "127.0.0.1"  # rehearsal: a closed loopback port, nothing leaves the machine')
            out.append("smtp_port = 9")
            continue
        if line.strip().startswith("tls") and "starttls" in line:
            out.append('tls = "none"  # rehearsal: plain text is accepted for a loopback relay')
            continue
        if line.strip().startswith("url") and STATE in line:
            out.append(line.replace(STATE, str(state_dir)) + "  # rehearsal: the scratch state directory")
            continue
        out.append(line)
        if line.strip() == "[[organisations]]":
            out.append(f'authority_host = "{emulator}"  # rehearsal: the emulator issues the tokens')
            out.append(f'ca_certificate_file = "{ca_file}"  # rehearsal: the emulator\'s CA')
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unit", required=True, help="the .service file")
    parser.add_argument("--config", required=True, help="the production sync.toml to rehearse")
    parser.add_argument("--bin-dir", required=True, help="where sync-worker and health-check are built")
    parser.add_argument("--emulator", required=True, help="the emulator's instance URL (also its Azure AD)")
    parser.add_argument("--ca", required=True, help="the emulator's CA certificate (PEM)")
    parser.add_argument("--root", required=True, help="a scratch folder standing in for / ")
    parser.add_argument("--tenant-id", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret", required=True)
    args = parser.parse_args()

    root = Path(args.root)
    etc, state, creds = root / "etc", root / "state", root / "credentials"
    for folder in (etc, state, creds):
        folder.mkdir(parents=True, exist_ok=True)
    (etc / "sync.toml").write_text(
        rehearsal_config(Path(args.config).read_text(encoding="utf-8"), args.emulator, args.ca, state),
        encoding="utf-8",
    )
    (etc / "sync.env").write_text(
        f"DYNAMICS_TENANT_ID={args.tenant_id}\nDYNAMICS_CLIENT_ID={args.client_id}\n"
        f"DYNAMICS_INSTANCE_URL={args.emulator}\n",
        encoding="utf-8",
    )
    secrets = {"client-secret": args.client_secret}

    def moved(text):
        text = text.replace("%d", str(creds))
        text = text.replace(ETC + "/credentials", str(root / "etc-credentials"))
        text = text.replace(ETC, str(etc)).replace(STATE, str(state))
        return text.replace(BIN, str(Path(args.bin_dir)) + "/")

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "NO_PROXY": "*"}
    command, cwd = None, None
    for key, value in parse_unit(args.unit):
        if key == "EnvironmentFile":
            for line in Path(moved(value.lstrip("-"))).read_text(encoding="utf-8").splitlines():
                if line.strip() and not line.startswith("#"):
                    name, _, val = line.partition("=")
                    env[name.strip()] = val.strip()
        elif key == "Environment":
            name, _, val = value.partition("=")
            env[name] = moved(val)
        elif key == "LoadCredential":
            name, _, _source = value.partition(":")
            # systemd copies the root-only file into the service's credentials folder (%d) at start.
            (creds / name).write_text(secrets.get(name, f"rehearsal-{name}") + "\n", encoding="utf-8")
        elif key == "ExecStart":
            command = moved(value).split()
        elif key == "WorkingDirectory":
            cwd = moved(value)
    if command is None:
        sys.exit(f"{args.unit}: no ExecStart")
    print("rehearse: " + " ".join(command), file=sys.stderr)
    return subprocess.run(command, env=env, cwd=cwd, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
