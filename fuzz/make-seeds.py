#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora into fuzz/seeds/TARGET/.

Webhook seeds are the deliveries the deploy tools send (shapes of each
tool's docs, as in tests/it/webhooks.rs), in the webhook targets' input
format: a flag byte (1: the harness signs), header lines, a blank line, the
body. Rule-pack and config seeds are the project's own rules/*.yaml, test
fixtures and example config, plus the config texts of the integration tests.
"""
import pathlib, re, shutil

root = pathlib.Path(__file__).resolve().parent.parent
out = root / "fuzz" / "seeds"

github = '{"action":"created","deployment_status":{"id":209916254,"state":"%s","description":"deployed","environment":"production","target_url":"https://ci.example/run/7","creator":{"login":"octocat"}},"deployment":{"id":145988746,"sha":"f95f852bd8fca8fcc58a9a2d6c842781e32a215e","ref":"main","task":"deploy","payload":%s,"environment":"production","description":null,"url":"https://api.github.com/repos/acme/checkout/deployments/1"},"repository":{"full_name":"acme/checkout","html_url":"https://github.com/acme/checkout"},"sender":{"login":"octocat"}}'
gitlab = '{"object_kind":"deployment","status":"%s","status_changed_at":"2021-04-28 21:50:00 +0200","deployment_id":15,"deployable_id":796,"deployable_url":"http://gitlab.example/acme/checkout/-/jobs/796","environment":"production","environment_tier":"production","project":{"id":30,"name":"checkout","web_url":"http://gitlab.example/acme/checkout","path_with_namespace":"acme/checkout"},"short_sha":"279484c0","user":{"id":1,"name":"Administrator","username":"root"},"user_url":"http://gitlab.example/root","commit_url":"http://gitlab.example/acme/checkout/-/commit/279484c09fbe69ededfced8c1bb6e6d24616b468","commit_title":"Add new file"}'
argocd = '{"app":"checkout-prod","namespace":"argocd","project":"default","revision":"731f7eaddfb6af01cb2173e18f0f75b0ba780ef1","previousRevision":"279484c09fbe69ededfced8c1bb6e6d24616b468","syncStatus":"Synced","healthStatus":"%s","phase":"Succeeded","operationRevision":"731f7eaddfb6af01cb2173e18f0f75b0ba780ef1","startedAt":"2026-11-28T10:00:00Z","finishedAt":"2026-11-28T10:01:00Z","message":"successfully synced","repoURL":"https://git.example/acme/checkout","initiatedBy":"alice","environment":"production","argocdUrl":"https://argocd.example/applications/checkout-prod"}'
flux = '{"involvedObject":{"apiVersion":"kustomize.toolkit.fluxcd.io/v1","kind":"Kustomization","name":"checkout","namespace":"flux-system","uid":"7d0cdc51-ddcf-4743-b223-83ca5c699632"},"metadata":{"kustomize.toolkit.fluxcd.io/revision":"main@sha1:0a1b2c3d4e5f60718293a4b5c6d7e8f901234567","previous_version":"v1"},"severity":"%s","reason":"%s","message":"Reconciliation finished","reportingController":"kustomize-controller","reportingInstance":"kustomize-controller-7c7b47f5f-8bhrp","timestamp":"2022-10-28T07:26:19Z"}'

def delivery(headers, body, sign=True):
    head = "".join(f"{k}: {v}\n" for k, v in headers)
    return bytes([1 if sign else 0]) + (head + "\n" + body).encode()

seeds = {
    "webhook_github": [
        delivery([("x-github-event", "deployment_status"), ("x-github-delivery", "d-1"), ("content-type", "application/json")], github % ("success", "{}")),
        delivery([("x-github-event", "deployment_status")], github % ("success", '{"version":"v2","previous_version":"v1"}')),
        delivery([("x-github-event", "deployment_status")], github % ("in_progress", "{}")),
        delivery([("x-github-event", "ping")], '{"zen":"Design for failure."}'),
        delivery([("x-github-event", "deployment_status"), ("x-hub-signature-256", "sha256=00ff")], github % ("success", "{}"), sign=False),
    ],
    "webhook_gitlab": [
        delivery([("x-gitlab-event", "Deployment Hook"), ("idempotency-key", "k-1")], gitlab % "success"),
        delivery([("x-gitlab-event", "Deployment Hook"), ("x-gitlab-event-uuid", "u-1")], gitlab % "running"),
        delivery([("x-gitlab-event", "Push Hook")], '{"object_kind":"push"}'),
        delivery([("x-gitlab-event", "Deployment Hook"), ("x-gitlab-token", "wrong")], gitlab % "success", sign=False),
    ],
    "webhook_argocd": [
        delivery([("content-type", "application/json")], argocd % "Healthy"),
        delivery([], argocd % "Degraded"),
        delivery([("authorization", "Bearer wrong")], argocd % "Healthy", sign=False),
    ],
    "webhook_flux": [
        delivery([("gotk-component", "kustomize-controller")], flux % ("info", "ReconciliationSucceeded")),
        delivery([], flux % ("error", "ValidationFailed")),
        delivery([("x-signature", "sha256=00")], flux % ("info", "ReconciliationSucceeded"), sign=False),
    ],
    "release": [
        b'{"service":"checkout","version":"v2"}',
        b'{"service":"checkout","version":"v2","previous_version":"v1","environment":"production","annotations":{"pr":1,"by":"ci","nested":{"a":[1,2.5,null,true]}}}',
        '{"service":"checkout","version":"v2-\u00e9t\u00e9"}'.encode(),
        b'["checkout","v2"]',
    ],
    "exposition": [
        b'# HELP http_requests_total Requests served.\n# TYPE http_requests_total counter\nhttp_requests_total{service="checkout",code="200"} 100027.5 1700000000000\nhttp_requests_total{service="checkout",code="500"} 3\n',
        b'# TYPE lat histogram\nlat_bucket{le="0.05"} 5\nlat_bucket{le="0.1"} 8\nlat_bucket{le="+Inf"} 10\nlat_sum 0.7\nlat_count 10\n# TYPE rpc summary\nrpc{quantile="0.99"} NaN\nrpc_sum -Inf\nrpc_count 0\n',
        b'route_total{route="/search?q=a,b",note="say \\"hi\\"\\nback\\\\slash",empty=""} 1e3\n  spaced { a = "1" , b="x}y", } 2\n\nup 1\n',
    ],
}

if out.exists():
    shutil.rmtree(out)
for target, items in seeds.items():
    (out / target).mkdir(parents=True)
    for i, data in enumerate(items):
        (out / target / f"seed-{i}").write_bytes(data)

packs = sorted(root.glob("rules/*.yaml")) + sorted(root.glob("tests/fixtures/**/*.yaml"))
(out / "rule_pack").mkdir(parents=True)
for p in packs:
    (out / "rule_pack" / p.name).write_bytes(p.read_bytes())

# Rule packs written inline in the tests.
for p in sorted((root / "tests" / "it").glob("*.rs")) + sorted((root / "src" / "config").glob("*.rs")):
    for i, m in enumerate(re.finditer(r'r#"(.*?)"#', p.read_text(), re.S)):
        if re.search(r"^checks:", m.group(1), re.M):
            (out / "rule_pack" / f"{p.stem}-{i}.yaml").write_text(m.group(1))

(out / "config").mkdir(parents=True)
configs = [root / "guardian.example.toml"] + sorted(root.glob("tests/fixtures/**/*.toml"))
for p in configs:
    (out / "config" / p.name).write_bytes(p.read_bytes())
# Config texts written inline in the tests (raw strings holding a section header).
n = 0
for p in sorted((root / "tests" / "it").glob("*.rs")) + [root / "src" / "fuzz.rs"]:
    for m in re.finditer(r'r#"(.*?)"#', p.read_text(), re.S):
        text = m.group(1)
        if re.search(r"^\[\[?(server|services|sources|notifiers|webhooks|store|cadence|auth)", text, re.M):
            text = text.replace("{{", "{").replace("}}", "}")
            (out / "config" / f"{p.stem}-{n}.toml").write_text(text)
            n += 1
for t in sorted(out.iterdir()):
    print(t.name, len(list(t.iterdir())))
