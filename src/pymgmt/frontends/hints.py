"""Words people bring from Puppet and Ansible, and what pymgmt calls each.

difflib's nearest word is a poor guide for habits: it told a Puppet user
whose file said ``state: present`` to write 'absent' (issue 8, item 19). A
word found here gets its own hint; any other falls back to the nearest one.
"""

from __future__ import annotations

_PUPPET = "Puppet's and Ansible's word for it"

#: (kind, field) -> {a habit's value: the hint}
_VALUES: dict[tuple[str, str], dict[str, str]] = {
    ("file", "state"): {
        "present": f"did you mean 'exists'? 'present' is {_PUPPET}",
        "file": "did you mean 'exists'? a path without a trailing '/' is a file",
        "directory": "did you mean 'exists'? a path ending in '/' is a directory",
        "touch": "did you mean 'exists'? without content an existing file is left as it is",
    },
    ("pkg", "state"): {
        "present": f"did you mean 'installed'? 'present' is {_PUPPET}",
        "latest": f"did you mean 'newest'? 'latest' is {_PUPPET}",
        "absent": f"did you mean 'uninstalled'? 'absent' is {_PUPPET}",
        "removed": "did you mean 'uninstalled'?",
        "purged": "did you mean 'uninstalled'?",
    },
    ("svc", "state"): {
        "started": "did you mean 'running'? 'started' is Ansible's word for it",
        "restarted": "did you mean 'running'? a notify edge into the svc restarts it",
        "reloaded": "did you mean 'running'? a notify edge into the svc reloads it",
        "enabled": "starting at boot is another field: write 'startup: enabled'",
        "disabled": "starting at boot is another field: write 'startup: disabled'",
    },
    ("svc", "startup"): {
        "true": "did you mean 'enabled'?",
        "false": "did you mean 'disabled'?",
        "yes": "did you mean 'enabled'?",
        "no": "did you mean 'disabled'?",
    },
}

#: (kind, field) -> hint, for fields pymgmt spells differently; kind "" = any kind
_FIELDS: dict[tuple[str, str], str] = {
    ("", "ensure"): "did you mean 'state'? 'ensure' is Puppet's word for it",
    ("svc", "enable"): "did you mean 'startup'? as in 'startup: enabled'",
    ("svc", "enabled"): "did you mean 'startup'? as in 'startup: enabled'",
    ("pkg", "version"): "a version goes in 'state': state: 1.2-3",
    ("file", "dest"): "did you mean 'path'?",
    ("exec", "command"): "did you mean 'cmd'?",
    ("kv", "key"): "a kv's key is its name: write the key as 'name'",
    ("file", "context"): "did you mean 'vars'? a template's variables ('context' is Salt's)",
    ("file", "defaults"): "did you mean 'vars'? a template's variables ('defaults' is Salt's)",
    ("file", "variables"): "did you mean 'vars'?",
}

#: mgmt's resource kinds that pymgmt does not (yet) implement
MGMT_ONLY_KINDS = frozenset(
    {
        "augeas",
        "aws:ec2",
        "docker:container",
        "docker:image",
        "firewalld",
        "gsettings",
        "http:server",
        "net",
        "nspawn",
        "print",
        "ssh:authorized_key",
        "test",
        "value",
        "virt",
    }
)


def kind_hint(kind: str) -> str | None:
    """For a kind mgmt has and pymgmt lacks: say that, not "did you mean"."""
    if kind in MGMT_ONLY_KINDS:
        return f"'{kind}' is an mgmt resource kind that pymgmt does not implement"
    return None


def value_hint(kind: str, field: str, value: object) -> str | None:
    """The hint for a habit's value of `kind`'s `field`, if it is one."""
    if not isinstance(value, str | bool):
        return None
    word = str(value).lower()
    return _VALUES.get((kind, field), {}).get(word)


def field_hint(kind: str, field: str) -> str | None:
    """The hint for a field named as another tool names it, if it is one."""
    return _FIELDS.get((kind, field)) or _FIELDS.get(("", field))
