"""Offline tests of the Helm chart in charts/dialer, with Helm's own Go library (helm-python-sdk).

Lints strictly, renders with the default values and with values-scaled.yaml, validates every rendered
resource against the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields fail), and checks
what the chart promises: replica counts, roles, config keys, hooks, the ServiceMonitor selecting both
Services, the dashboard ConfigMap. No cluster is contacted. Run through scripts/chart-test.sh.
"""

from __future__ import annotations

import json
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import kubernetes_validate.utils as kv_utils
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "dialer"
SCALED = CHART / "values-scaled.yaml"

# Custom resources the bundled Kubernetes schemas do not know; skipped by (apiVersion, kind), nothing else.
CRDS_NOT_IN_SCHEMA = {("monitoring.coreos.com/v1", "ServiceMonitor")}

# The chart's kubeVersion floor and the newest schema set shipped with kubernetes-validate.
KUBE_VERSIONS = ["1.25.0", kv_utils.latest_version()]

RELEASE = "demo"
NAMESPACE = "calls"


def scaled_values() -> dict:
    return yaml.safe_load(SCALED.read_text())


def render(values: dict | None = None) -> list[dict]:
    """Every rendered resource, in template order."""
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    docs = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("metadata", {})
                doc["_template"] = path
                docs.append(doc)
    return docs


def find(docs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def strip(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k != "_template"}


VALUE_SETS = {
    "default": lambda: None,
    "scaled": scaled_values,
    "existing-secret": lambda: {"existingSecret": "dialer-secrets", "serviceMonitor": {"enabled": True}},
    "all-optional": lambda: {
        "secrets": {
            "databaseUrl": "postgres://dialer:pw@postgres:5432/dialer",
            "twilioAccountSid": "AC00000000000000000000000000000000",
            "twilioAuthToken": "token",
            "attemptTokenSecret": "0123456789abcdef0123456789abcdef",
        },
        "imagePullSecrets": [{"name": "registry"}],
        "config": {"publicBaseUrl": "https://twilio-hooks.example.org/", "extraEnv": {"STALE_CALL_SECONDS": 600}},
        "callbacks": {"ingress": {"className": "nginx", "tlsSecretName": "callbacks-tls",
                                  "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "1m"}}},
        "dialer": {"nodeSelector": {"pool": "dialer"}, "tolerations": [{"key": "k", "operator": "Exists"}],
                   "autoscaling": {"enabled": True, "maxReplicas": 6}},
        "serviceMonitor": {"enabled": True},
        "podDisruptionBudget": {"enabled": True},
        "dashboard": {"annotations": {"grafana_folder": "Dialer"}},
    },
}


@pytest.mark.parametrize("values_name", ["default", "scaled"])
def test_lint_strict(values_name):
    report = helm.lint(str(CHART), VALUE_SETS[values_name](), strict=True, namespace=NAMESPACE)
    assert report["total_charts_linted"] == 1
    assert report["errors"] == [], report
    # Severity 1 is informational ("icon is recommended"); warnings (2) and errors (3) fail a strict lint.
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [], problems


@pytest.mark.parametrize("values_name", sorted(VALUE_SETS))
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_render_validates_against_kubernetes_schemas(values_name, kube_version):
    docs = render(VALUE_SETS[values_name]())
    assert docs, "nothing rendered"
    validated = skipped = 0
    for doc in docs:
        key = (doc["apiVersion"], doc["kind"])
        where = f'{doc["_template"]}: {doc["kind"]} {doc["metadata"].get("name")}'
        if key in CRDS_NOT_IN_SCHEMA:
            skipped += 1
            continue
        try:
            kubernetes_validate.validate(strip(doc), kube_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{where} invalid for Kubernetes {kube_version}: {e.message} at {list(e.path)}")
        except kv_utils.SchemaNotFoundError:
            pytest.fail(f"{where}: no schema for {key} in Kubernetes {kube_version} (a CRD? list it)")
        validated += 1
    assert validated >= 8
    if values_name != "default":
        assert skipped == 1, "the ServiceMonitor is enabled in this value set"


def test_scaled_replica_counts_and_roles():
    scaled = scaled_values()
    assert scaled["dialer"]["replicas"] == 4 and scaled["callbacks"]["replicas"] == 3
    docs = render(scaled)
    for role, replicas in [("dialer", 4), ("callbacks", 3)]:
        dep = one(docs, "Deployment", f"{RELEASE}-dialer-{role}")
        assert dep["spec"]["replicas"] == replicas
        pod = dep["spec"]["template"]
        assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == role
        (container,) = pod["spec"]["containers"]
        assert container["args"] == ["serve", "--role", role]
        spread = pod["spec"]["topologySpreadConstraints"][0]
        assert spread["labelSelector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    assert len(find(docs, "PodDisruptionBudget")) == 3
    assert one(docs, "ConfigMap", f"{RELEASE}-dialer")["data"]["ACCOUNT_CPS"] == "30"


def test_default_render_shape():
    docs = render()
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        ["ConfigMap", "ConfigMap", "Secret", "Secret", "Deployment", "Deployment", "Deployment", "Service",
         "Service", "Service", "Ingress", "Job", "ServiceAccount"]
    ), kinds
    assert not find(docs, "ServiceMonitor") and not find(docs, "PodDisruptionBudget")
    for role, replicas in [("dialer", 1), ("callbacks", 2), ("api", 1)]:
        dep = one(docs, "Deployment", f"{RELEASE}-dialer-{role}")
        assert dep["spec"]["replicas"] == replicas
        pod = dep["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        (c,) = pod["containers"]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        # Liveness must not fail with the database (restarts fix nothing); readiness does.
        assert c["livenessProbe"]["httpGet"]["path"] == "/livez"
        assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["port"] == "http"
        # Shutdown fits the grace period: unready for the delay, then drain, then exit.
        env = {e["name"]: e["value"] for e in c["env"]}
        grace = pod["terminationGracePeriodSeconds"]
        assert env["SHUTDOWN_DELAY_SECONDS"] == "5"
        assert 0 < int(env["SHUTDOWN_DELAY_SECONDS"]) + int(env["SHUTDOWN_GRACE_SECONDS"]) < grace
        assert c["resources"]["requests"] and c["resources"]["limits"]
        assert {"configMapRef": {"name": f"{RELEASE}-dialer"}} in c["envFrom"]
        assert {"secretRef": {"name": f"{RELEASE}-dialer"}} in c["envFrom"]

    config = one(docs, "ConfigMap", f"{RELEASE}-dialer")["data"]
    assert set(config) == {"LISTEN_ADDR", "API_LISTEN_ADDR", "PUBLIC_BASE_URL", "TWILIO_API_BASE_URL",
                           "ACCOUNT_CPS", "CLAIM_BATCH_SIZE", "LEASE_SECONDS", "MIGRATE_ON_START"}
    # The migration Job migrates; the pods only check (readiness) and never race it.
    assert config["MIGRATE_ON_START"] == "false"
    assert not find(docs, "HorizontalPodAutoscaler")
    assert not config["LISTEN_ADDR"].startswith("127."), "pods must listen beyond loopback"
    assert not config["API_LISTEN_ADDR"].startswith("127."), "pods must listen beyond loopback"

    # The management API: its own port on its own Service, never on the public Ingress.
    api = one(docs, "Deployment", f"{RELEASE}-dialer-api")
    (c,) = api["spec"]["template"]["spec"]["containers"]
    assert c["args"] == ["serve", "--role", "api"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["api"] == int(config["API_LISTEN_ADDR"].rsplit(":", 1)[1])
    api_svc = one(docs, "Service", f"{RELEASE}-dialer-api")
    assert {p["targetPort"] for p in api_svc["spec"]["ports"]} == {"api", "http"}
    assert api_svc["spec"]["type"] == "ClusterIP"
    assert api_svc["spec"]["selector"] == api["spec"]["selector"]["matchLabels"]

    # PUBLIC_BASE_URL is the Ingress host, and the Ingress routes to the callbacks Service, not /metrics.
    ingress = one(docs, "Ingress", f"{RELEASE}-dialer-callbacks")
    (rule,) = ingress["spec"]["rules"]
    assert config["PUBLIC_BASE_URL"] == f"https://{rule['host']}"
    paths = {p["path"] for p in rule["http"]["paths"]}
    assert paths == {"/twiml", "/gather", "/status", "/amd"}
    assert {p["backend"]["service"]["name"] for p in rule["http"]["paths"]} == {f"{RELEASE}-dialer-callbacks"}
    svc = one(docs, "Service", f"{RELEASE}-dialer-callbacks")
    callbacks = one(docs, "Deployment", f"{RELEASE}-dialer-callbacks")
    assert svc["spec"]["selector"] == callbacks["spec"]["selector"]["matchLabels"]

    # Migrations: a pre-install/pre-upgrade hook running `dialer migrate`, DATABASE_URL from a hook Secret.
    job = one(docs, "Job", f"{RELEASE}-dialer-migrations")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    (mc,) = job["spec"]["template"]["spec"]["containers"]
    assert mc["args"] == ["migrate"]
    ref = mc["env"][0]["valueFrom"]["secretKeyRef"]
    hook_secret = one(docs, "Secret", ref["name"])
    assert hook_secret["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert int(hook_secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"])


def test_dashboard_configmap_is_the_dashboard():
    docs = render()
    cm = one(docs, "ConfigMap", f"{RELEASE}-dialer-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(cm["data"]["dialer.json"])
    assert shipped == json.loads((ROOT / "dashboard" / "dialer.json").read_text())


def test_secrets_and_existing_secret():
    values = VALUE_SETS["all-optional"]()
    docs = render(values)
    secret = one(docs, "Secret", f"{RELEASE}-dialer")
    assert set(secret["stringData"]) == {"DATABASE_URL", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN",
                                         "ATTEMPT_TOKEN_SECRET"}
    config = one(docs, "ConfigMap", f"{RELEASE}-dialer")["data"]
    assert config["PUBLIC_BASE_URL"] == "https://twilio-hooks.example.org"
    assert config["STALE_CALL_SECONDS"] == "600"

    docs = render({"existingSecret": "dialer-secrets"})
    assert not find(docs, "Secret"), "no Secret is created when existingSecret is given"
    for role in ["dialer", "callbacks", "api"]:
        (c,) = one(docs, "Deployment", f"{RELEASE}-dialer-{role}")["spec"]["template"]["spec"]["containers"]
        assert {"secretRef": {"name": "dialer-secrets"}} in c["envFrom"]
    job = one(docs, "Job", f"{RELEASE}-dialer-migrations")
    assert job["spec"]["template"]["spec"]["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["name"] == (
        "dialer-secrets")


def test_service_monitor_selects_every_service():
    docs = render({"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}})
    sm = one(docs, "ServiceMonitor", f"{RELEASE}-dialer")
    assert sm["metadata"]["labels"]["release"] == "prom"
    selector = sm["spec"]["selector"]
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"

    def selected(labels: dict) -> bool:
        if any(labels.get(k) != v for k, v in selector["matchLabels"].items()):
            return False
        for expr in selector.get("matchExpressions", []):
            assert expr["operator"] == "In"
            if labels.get(expr["key"]) not in expr["values"]:
                return False
        return True

    services = find(docs, "Service")
    chosen = {s["metadata"]["name"] for s in services if selected(s["metadata"]["labels"])}
    assert chosen == {f"{RELEASE}-dialer-dialer", f"{RELEASE}-dialer-callbacks", f"{RELEASE}-dialer-api"}
    for s in services:
        assert endpoint["port"] in {p["name"] for p in s["spec"]["ports"]}
        # Each Service selects the pods of exactly its own Deployment.
        role = s["metadata"]["labels"]["app.kubernetes.io/component"]
        dep = one(docs, "Deployment", f"{RELEASE}-dialer-{role}")
        assert s["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]


def test_public_base_url_is_required():
    with pytest.raises(helm.HelmRenderError, match="publicBaseUrl"):
        render({"callbacks": {"ingress": {"enabled": False}}})


def test_autoscaling_scales_the_dialers_on_their_backlog_per_replica():
    docs = render(VALUE_SETS["all-optional"]())
    hpa = one(docs, "HorizontalPodAutoscaler", f"{RELEASE}-dialer-dialer")
    dep = one(docs, "Deployment", f"{RELEASE}-dialer-dialer")
    assert "replicas" not in dep["spec"], "the HPA owns the replica count"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": dep["metadata"]["name"]}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 6)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["external"]["metric"] == {"name": "dialer_contacts",
                                            "selector": {"matchLabels": {"state": "pending"}}}
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "20000"}
    # Only the dialers scale on the backlog.
    assert one(docs, "Deployment", f"{RELEASE}-dialer-callbacks")["spec"]["replicas"] == 2


def test_migrations_disabled_lets_the_pods_migrate_themselves():
    docs = render({"migrations": {"enabled": False}})
    assert not find(docs, "Job")
    assert one(docs, "ConfigMap", f"{RELEASE}-dialer")["data"]["MIGRATE_ON_START"] == "true"
