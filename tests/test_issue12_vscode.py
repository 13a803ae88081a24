"""Issue 12 #15: the command the editor runs is a machine setting, so a workspace's .vscode/settings.json cannot pick it."""

import json
import os

PKG = os.path.join(os.path.dirname(__file__), "..", "editors", "vscode", "package.json")


def test_server_command_settings_are_machine_scoped():
    props = json.load(open(PKG, encoding="utf-8"))["contributes"]["configuration"]["properties"]
    for key in ("codefill.serverPath", "codefill.serverArgs"):
        assert props[key].get("scope") == "machine", key
