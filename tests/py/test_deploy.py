"""deploy/ against a running gateway: the scraped /metrics page and the alert rules pass promtool,
and the Grafana dashboard and alerts reference only metrics the gateway exports; and the Kubernetes
manifests against the API's schemas, offline."""

import json
import pathlib
import re
import subprocess
import urllib.error
import urllib.request

import pytest

DEPLOY = pathlib.Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\bcustoms_[a-z_]+")


def post(gw, key, model):
    req = urllib.request.Request(
        f"{gw.base}/v1/chat/completions",
        data=json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.fixture(scope="module")
def scraped(gateway):
    """The /metrics page after traffic that touches every kind of outcome."""
    statuses = [post(gateway, "sk-demo-us", "gpt-4o"), post(gateway, "sk-demo-cn", "gpt-4o"), post(gateway, "bad", "x")]
    # A model with a declared parameter count, so inference FLOPs are charged.
    assert post(gateway, "sk-demo-us", "llama-3.1-8b-instruct") == 200
    statuses += [post(gateway, "sk-demo-limited", "gpt-4o-mini") for _ in range(4)]
    assert statuses[:3] == [200, 403, 401]
    assert 429 in statuses[3:]
    with urllib.request.urlopen(f"{gateway.admin}/metrics") as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return r.read().decode()


def exported_names(page):
    names = set()
    for line in page.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def test_scraped_metrics_pass_promtool(scraped):
    r = subprocess.run(["promtool", "check", "metrics"], input=scraped, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert 'customs_requests_total{decision="deny",jurisdiction="us",reason="rate_limit_exceeded",tenant="demo-limited"}' in scraped


def test_alert_rules_pass_promtool_and_their_unit_tests():
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]):
        r = subprocess.run(["promtool", *args], cwd=DEPLOY / "prometheus", capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr


def test_dashboard_references_only_exported_metrics(scraped):
    dash = json.loads((DEPLOY / "grafana" / "customs-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in dash["templating"]["list"] if "definition" in v]
    used = {m for e in exprs for m in METRIC.findall(e)}
    exported = exported_names(scraped)
    assert used, "the dashboard queries no customs metric"
    assert used <= exported, f"not exported: {sorted(used - exported)}"
    # Every family the gateway exports has a panel.
    families = {n for n in exported if not re.search(r"_(bucket|sum|count)$", n) or n.endswith("_total")}
    covered = {re.sub(r"_(bucket|sum|count)$", "", m) for m in used}
    assert families <= covered | used, f"no panel for: {sorted(families - covered - used)}"


def test_alerts_reference_only_exported_metrics(scraped):
    used = set(METRIC.findall((DEPLOY / "prometheus" / "alerts.yml").read_text()))
    assert used and used <= exported_names(scraped), sorted(used - exported_names(scraped))


def test_kubernetes_manifests_validate_against_the_api_schemas():
    # Offline: kubernetes-validate carries the API's JSON schemas; strict rejects unknown fields.
    import kubernetes_validate
    import yaml

    kinds = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue
            kubernetes_validate.validate(doc, "1.33.0", strict=True)
            kinds.append((path.name, doc["kind"], doc["metadata"]["name"]))
    assert ("customs.yaml", "Deployment", "customs") in kinds
    assert ("customs.yaml", "PodDisruptionBudget", "customs") in kinds
    assert ("redis.yaml", "Service", "customs-redis") in kinds


def test_the_deployment_probes_readiness_and_gives_each_pod_its_own_trail():
    import yaml

    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "customs.yaml").read_text()))
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    assert deploy["spec"]["replicas"] >= 2
    pod = deploy["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    audit = next(m for m in c["volumeMounts"] if m["name"] == "audit")
    assert audit["subPathExpr"] == "$(POD_NAME)"
    assert any(e["name"] == "POD_NAME" for e in c["env"])
    # The image's entrypoint is replaced, not appended to.
    assert c["command"] == ["/usr/local/bin/customs"]
    claim = next(v for v in pod["volumes"] if v["name"] == "audit")["persistentVolumeClaim"]["claimName"]
    pvc = next(d for d in docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == claim)
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
