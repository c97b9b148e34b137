"""Where trainctl finds the RunPod API key, in the documented order: $RUNPOD_API_KEY, `[runpod]
api_key` in the config, then the RunPod server of an MCP client's config (Claude Desktop,
Cursor, VS Code). Cheap: no SDK, so `trainctl config show` can say which one is in use."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from ...core.formatting import mask_secret

ENV_VAR = "RUNPOD_API_KEY"


def mcp_config_files(platform: str | None = None, home: Path | None = None,
                     cwd: Path | None = None) -> list[tuple[str, Path]]:
    """(client, path) of the MCP client config files that may define a RunPod server, in
    the order they are searched."""
    platform = platform or sys.platform
    home = home or Path.home()
    cwd = cwd or Path.cwd()
    if platform == "darwin":
        app_support = home / "Library" / "Application Support"
        claude, code = app_support / "Claude", app_support / "Code" / "User"
    elif platform.startswith("win"):
        appdata = Path(os.environ.get("APPDATA") or home / "AppData" / "Roaming")
        claude, code = appdata / "Claude", appdata / "Code" / "User"
    else:
        config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
        claude, code = config / "Claude", config / "Code" / "User"
    return [
        ("Claude Desktop", claude / "claude_desktop_config.json"),
        ("Cursor", home / ".cursor" / "mcp.json"),
        ("VS Code", code / "mcp.json"),
        ("VS Code workspace", cwd / ".vscode" / "mcp.json"),
    ]


def _strip_jsonc(text: str) -> str:
    """VS Code's mcp.json is JSON with comments and trailing commas."""
    out, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            out.append(ch)
            i += 1
    return re.sub(r",(\s*[}\]])", r"\1", "".join(out))


def key_from_mcp_file(path: Path) -> tuple[str, str] | None:
    """(key, server name) of the first server in the file that looks like RunPod's MCP
    server and has RUNPOD_API_KEY in its env; None if there is none (or the file is bad)."""
    try:
        data = json.loads(_strip_jsonc(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    servers = data.get("mcpServers") or data.get("servers")
    if not isinstance(servers, dict) and isinstance(data.get("mcp"), dict):
        servers = data["mcp"].get("servers")
    if not isinstance(servers, dict):
        return None
    for name, server in servers.items():
        if not isinstance(server, dict):
            continue
        args = server.get("args") if isinstance(server.get("args"), list) else []
        words = " ".join([str(name), str(server.get("command", "")), *map(str, args),
                          str(server.get("url", ""))])
        env = server.get("env") if isinstance(server.get("env"), dict) else {}
        key = env.get(ENV_VAR)
        if "runpod" in words.lower() and isinstance(key, str) and key.strip() \
                and not key.strip().startswith("${"):  # ${input:...} is a prompt, not a key
            return key.strip(), str(name)
    return None


def find_api_key(config) -> tuple[str, str] | None:
    """(key, where it came from) in the documented order, or None."""
    value = os.environ.get(ENV_VAR, "").strip()
    if value:
        return value, ENV_VAR
    secret = config.runpod.api_key
    if secret is not None and secret.get_secret_value().strip():
        return secret.get_secret_value().strip(), "[runpod] api_key in the trainctl config"
    for client, path in mcp_config_files():
        found = key_from_mcp_file(path)
        if found:
            return found[0], f"{client} MCP config {path} (server '{found[1]}')"
    return None


def key_source_line(config) -> str:
    """What `trainctl config show` prints about the RunPod key: source and masked key."""
    found = find_api_key(config)
    if found is None:
        return "# runpod api key: not found"
    return f"# runpod api key: {mask_secret(found[0])} from {found[1]}"
