"""LangSmith semantics through the real SDK (issue 17 item 4): a
`run_config` update reaches a running sandbox's next command, and the
agent's control paths are not relayed."""

from __future__ import annotations

import httpx


def test_run_config_update_reaches_the_next_command_of_a_running_sandbox(client, names):
    sb = client.create_sandbox(name="live-run-config")
    names.append(sb.name)
    assert sb.run('echo "[$FOO]"').stdout == "[]\n"
    # Started before the update: keeps the environment it started with.
    before = sb.run('sleep 2; echo "[$FOO] $(pwd)"', wait=False, timeout=30)
    client.update_sandbox(
        sb.name, run_config={"env_vars": {"FOO": "bar"}, "work_dir": "/opt/live"}
    )
    after = sb.run('echo "[$FOO] $(pwd)"')
    assert after.stdout == "[bar] /opt/live\n", after
    out = before.result
    assert out.stdout == "[] /home/user\n", out
    # Merged, not replaced: FOO stays while another variable is added.
    client.update_sandbox(sb.name, run_config={"env_vars": {"BAZ": "q"}})
    assert sb.run('echo "$FOO $BAZ"').stdout == "bar q\n"
    assert client.get_sandbox(sb.name).status == "ready"


def test_agent_control_paths_are_not_relayed(client, http, names):
    sb = client.create_sandbox(name="no-control-relay")
    names.append(sb.name)
    box = http.get(f"/boxes/{sb.name}").json()
    resp = httpx.put(
        f"{box['dataplane_url']}/_sandpit/run-config",
        headers=http.headers,
        json={"env_vars": {"FOO": "evil"}},
        timeout=30,
    )
    assert resp.status_code == 404, resp.text
    assert sb.run('echo "[$FOO]"').stdout == "[]\n"
