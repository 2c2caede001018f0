// The langsmith JS SDK's README sandbox examples (langsmith@0.12.0,
// `langsmith/sandbox`) against a Sandpit server, run by
// tests/e2e/test_langsmith_js.py with and without the optional `ws` package.
// Prints one JSON object with what each example saw; the test checks it.
//
// Environment: SANDPIT_API (the `/api/v2/sandboxes` base), SANDPIT_KEY,
// SANDPIT_PREFIX (sandbox name prefix).

import {
  SandboxClient,
  awsAuth,
  gcpAuth,
  opaqueSecret,
  proxyConfig,
  workspaceSecret,
} from "langsmith/sandbox";

const client = new SandboxClient({
  apiEndpoint: process.env.SANDPIT_API,
  apiKey: process.env.SANDPIT_KEY,
});
const prefix = process.env.SANDPIT_PREFIX;
const out = {};

out.ws = await import("ws").then(
  () => true,
  () => false,
);

// Quick start: create, run, files, delete.
{
  const sandbox = await client.createSandbox({ name: `${prefix}-basic` });
  try {
    out.basic = (await sandbox.run("echo hello")).stdout;
    await sandbox.write("/tmp/note.txt", "from js");
    out.read = new TextDecoder().decode(await sandbox.read("/tmp/note.txt"));
    // run_config per command: honoured over WebSocket and over the blocking
    // `{dataplane}/execute` the SDK posts to without `ws`.
    const result = await sandbox.run("pwd; echo $GREETING; id -u", {
      runConfig: { work_dir: "/tmp", env_vars: { GREETING: "hi" }, user: "65534" },
    });
    out.runConfig = result.stdout;
    out.exitCode = (await sandbox.run("exit 3")).exit_code;
  } finally {
    await sandbox.delete();
  }
}

// A sandbox-level run_config applies to every command.
{
  const sandbox = await client.createSandbox({
    name: `${prefix}-rc`,
    runConfig: { env_vars: { FROM_CREATE: "yes" }, work_dir: "/var" },
  });
  try {
    out.createRunConfig = (await sandbox.run("echo $FROM_CREATE; pwd")).stdout;
  } finally {
    await sandbox.delete();
  }
}

// README "Sandbox AWS Auth Proxy" (workspace secrets set by the test).
{
  const authConfig = proxyConfig({
    rules: [
      awsAuth({
        accessKeyId: workspaceSecret("SANDBOX_AWS_ACCESS_KEY_ID"),
        secretAccessKey: workspaceSecret("SANDBOX_AWS_SECRET_ACCESS_KEY"),
      }),
    ],
  });
  const sandbox = await client.createSandbox({
    name: `${prefix}-aws`,
    proxyConfig: authConfig,
  });
  try {
    const result = await sandbox.run("echo aws-ok");
    out.aws = result.stdout;
    // The SDK's Sandbox does not expose proxy_config: read the stored one.
    const stored = await fetch(`${process.env.SANDPIT_API}/boxes/${sandbox.name}`, {
      headers: { "X-Api-Key": process.env.SANDPIT_KEY },
    }).then((r) => r.json());
    out.awsRules = stored.proxy_config?.rules?.length ?? null;
  } finally {
    await sandbox.delete();
  }
}

// README "Sandbox GCP Auth Proxy", with an opaque secret as the README
// suggests for short-lived values.
{
  const authConfig = proxyConfig({
    rules: [
      gcpAuth({
        serviceAccountJson: opaqueSecret(process.env.SANDPIT_GCP_SA),
        scopes: ["https://www.googleapis.com/auth/devstorage.read_write"],
      }),
    ],
  });
  const sandbox = await client.createSandbox({
    name: `${prefix}-gcp`,
    proxyConfig: authConfig,
  });
  try {
    out.gcp = (await sandbox.run("echo gcp-ok")).stdout;
  } finally {
    await sandbox.delete();
  }
}

// Fields Sandpit does not implement are refused by name.
try {
  await client.createSandbox({ name: `${prefix}-mem`, preserveMemoryOnStop: true });
  out.refused = null;
} catch (err) {
  out.refused = String(err?.message ?? err);
}

// client.registries (the generated client) reaches the same server.
{
  const made = await client.registries.create({
    name: `${prefix}-reg`,
    url: "registry.example.com",
    username: "robot",
    password: "hunter2",
  });
  const got = await client.registries.retrieve(made.name);
  out.registry = { name: got.name, url: got.url, hasPassword: "password" in got };
  await client.registries.delete(made.name);
}

console.log(JSON.stringify(out));
