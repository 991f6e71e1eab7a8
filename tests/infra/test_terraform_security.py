"""The security properties of infra/terraform, so that an edit cannot silently open a public endpoint.

Each test reads the configuration as written (python-hcl2; no Terraform binary runs here) with variables at
their defaults: storage private and TLS-only, PostgreSQL closed unless named firewall rules open it, Key Vault
RBAC-only and unpurgeable, the app HTTPS-only with Entra ID in front of every route but the two webhooks that
verify their own signatures, secrets only as Key Vault references, and each role at its narrowest scope.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import pytest

from shared_core.settings import app_settings_problems, load_settings
from tests.infra.app_inventory import run_inventory
from tests.infra.terraform import ROOT, app_settings, block, load, referenced, settings_at_defaults

APP = "azurerm_function_app_flex_consumption.main"
#: The routes that authenticate their caller by a webhook signature, and the modules that serve them.
SIGNATURE_VERIFIED = {"/api/github/webhook": "functions.webhook", "/api/stripe/webhook": "functions.billing"}
#: Names of app settings that hold secrets; each must come from Key Vault.
SECRET_NAME = re.compile(r"SECRET|KEYS|API_KEY|PASSWORD|TOKEN|DATABASE_URL|CONNECTION_STRING")


def test_the_provider_and_terraform_are_pinned() -> None:
    terraform = load().terraform[0]
    azurerm = terraform["required_providers"][0]["azurerm"]
    assert azurerm["source"] == "hashicorp/azurerm"
    assert re.fullmatch(r"~> 4\.\d+", azurerm["version"])
    assert terraform["required_version"] == ">= 1.11.0"  # write-only arguments
    features = block(load().providers["azurerm"], "features")
    assert block(features, "key_vault")["purge_soft_delete_on_destroy"] is False


def test_storage_accounts_refuse_public_access_shared_keys_and_old_tls() -> None:
    accounts = load().resources["azurerm_storage_account"]
    assert set(accounts) == {"runtime", "plans"}
    for name, account in accounts.items():
        assert account["min_tls_version"] == "TLS1_2", name
        assert account["https_traffic_only_enabled"] is True, name
        assert account["allow_nested_items_to_be_public"] is False, name
        assert account["shared_access_key_enabled"] is False, name
        assert account["public_network_access_enabled"] is False, name
        assert account["local_user_enabled"] is False and account["sftp_enabled"] is False, name
        assert block(account, "network_rules")["default_action"] == "Deny", name
    containers = load().resources["azurerm_storage_container"]
    assert {name: c["container_access_type"] for name, c in containers.items()} == {
        "package": "private", "plans": "private"}


def test_plans_are_versioned_and_soft_deleted() -> None:
    properties = block(load().resource("azurerm_storage_account.plans"), "blob_properties")
    assert properties["versioning_enabled"] is True
    assert block(properties, "delete_retention_policy")["days"] == "${var.plans_blob_retention_days}"
    assert load().default("plans_blob_retention_days") >= 7


def test_task_hub_and_plans_live_in_separate_accounts() -> None:
    model = load()
    settings = app_settings(model)
    assert referenced(settings["AzureWebJobsStorage__accountName"]) == "azurerm_storage_account.runtime"
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage"] == ""  # no key-based connection string (see function_app.tf)
    assert referenced(settings["IRONLAYER_BLOB_ACCOUNT_URL"]) == "azurerm_storage_account.plans"
    assert referenced(settings["IRONLAYER_BLOB_CONTAINER"]) == "azurerm_storage_container.plans"
    assert referenced(model.resource("azurerm_storage_container.plans")["storage_account_id"]) == (
        "azurerm_storage_account.plans")
    assert referenced(model.resource("azurerm_storage_container.package")["storage_account_id"]) == (
        "azurerm_storage_account.runtime")
    # the hub's name comes from a variable, through an app setting that host.json reads
    assert settings["IRONLAYER_TASK_HUB"] == "${var.task_hub_name}"
    host = json.loads((ROOT / "host.json").read_text())
    assert host["extensions"]["durableTask"]["hubName"] == "%IRONLAYER_TASK_HUB%"
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]{2,44}", model.default("task_hub_name"))


def test_postgres_is_16_tls_only_and_closed_unless_named_rules_open_it() -> None:
    model = load()
    server = model.resource("azurerm_postgresql_flexible_server.main")
    assert server["version"] == "16"
    assert server["public_network_access_enabled"] == "${length(var.postgres_firewall_rules) > 0}"
    assert model.default("postgres_firewall_rules") == {}
    rules = model.resources["azurerm_postgresql_flexible_server_firewall_rule"]
    assert list(rules) == ["named"] and rules["named"]["for_each"] == "${var.postgres_firewall_rules}"
    assert "0.0.0.0" in model.variables["postgres_firewall_rules"]["validation"][0]["condition"]
    configuration = {c["name"]: c["value"] for c in
                     model.resources["azurerm_postgresql_flexible_server_configuration"].values()}
    assert configuration == {"require_secure_transport": "on", "ssl_min_protocol_version": "TLSv1.2"}
    assert server["backup_retention_days"] == "${var.postgres_backup_retention_days}"
    assert server["geo_redundant_backup_enabled"] == "${var.postgres_geo_redundant_backup}"
    assert 7 <= model.default("postgres_backup_retention_days") <= 35
    # the administrator password is write-only: never in the state or the plan
    assert "administrator_password" not in server
    assert server["administrator_password_wo"] == "${var.postgres_admin_password}"
    password = model.variables["postgres_admin_password"]
    assert password["sensitive"] is True and password["ephemeral"] is True and "default" not in password


def test_key_vault_is_rbac_only_unpurgeable_and_closed_by_default() -> None:
    model = load()
    vault = model.resource("azurerm_key_vault.main")
    assert vault["rbac_authorization_enabled"] is True and "access_policy" not in vault
    assert vault["purge_protection_enabled"] is True
    assert vault["soft_delete_retention_days"] == 90
    assert vault["public_network_access_enabled"] == "${length(var.key_vault_allowed_ip_ranges) > 0}"
    assert model.default("key_vault_allowed_ip_ranges") == []
    acls = block(vault, "network_acls")
    assert acls["default_action"] == "Deny" and acls["ip_rules"] == "${var.key_vault_allowed_ip_ranges}"
    # Terraform never holds a secret value: no secret resources, so nothing secret in the state
    assert "azurerm_key_vault_secret" not in model.resources


def test_the_app_is_https_only_with_its_own_identity() -> None:
    model = load()
    app = model.resource(APP)
    assert app["https_only"] is True
    assert (app["runtime_name"], app["runtime_version"]) == ("python", "3.11")
    assert block(app, "identity")["type"] == "SystemAssigned"
    assert app["storage_authentication_type"] == "SystemAssignedIdentity" and "storage_access_key" not in app
    assert app["webdeploy_publish_basic_authentication_enabled"] is False
    site = block(app, "site_config")
    assert site["minimum_tls_version"] == "1.2" and site["scm_minimum_tls_version"] == "1.2"
    assert site["remote_debugging_enabled"] is False
    assert site["vnet_route_all_enabled"] is True and referenced(app["virtual_network_subnet_id"]) == (
        "azurerm_subnet.app")
    always_ready = block(app, "dynamic")["always_ready"]
    assert always_ready["for_each"] == "${var.always_ready_instances}"
    assert model.default("always_ready_instances")["http"] >= 1  # the webhook answers without a cold start


def _served_routes() -> dict[str, str]:
    """Path -> module of every HTTP function the app registers, loaded in a fresh process as Azure loads it."""
    functions = run_inventory(sys.executable, ROOT, settings_at_defaults(load()))["functions"]
    prefix = json.loads((ROOT / "host.json").read_text())["extensions"]["http"]["routePrefix"]
    return {f"/{prefix}/{f['route']}": f["module"] for f in functions if f["route"]}


def test_entra_id_guards_every_route_but_the_signature_verified_webhooks() -> None:
    model = load()
    auth = block(model.resource(APP), "auth_settings_v2")
    assert auth["auth_enabled"] is True and auth["require_authentication"] is True
    assert auth["require_https"] is True
    assert auth["unauthenticated_action"] in ("RedirectToLoginPage", "Return401", "Return403")
    assert block(auth, "active_directory_v2")["client_id"] == "${var.entra_client_id}"
    # the app trusts X-MS-CLIENT-PRINCIPAL only because the platform, with authentication on, sets it
    assert app_settings(model)["IRONLAYER_APP_SERVICE_AUTH"] == "true"
    excluded = model.local(auth["excluded_paths"])
    assert sorted(excluded) == sorted(SIGNATURE_VERIFIED)
    served = _served_routes()
    assert served["/api/github/webhook"] == "functions.webhook"
    for path, module in served.items():
        # a served route is excluded exactly when a signature-verifying module serves it
        assert (path in excluded) == (module in SIGNATURE_VERIFIED.values()), path
    for path in excluded:
        assert path not in served or served[path] == SIGNATURE_VERIFIED[path], path


def test_secrets_reach_the_app_only_as_key_vault_references() -> None:
    model = load()
    settings = app_settings(model)
    secrets = model.locals["key_vault_secrets"]
    references = model.locals["key_vault_references"]
    assert "@Microsoft.KeyVault(SecretUri=${azurerm_key_vault.main.vault_uri}secrets/${secret}/)" in references
    for name, value in settings.items():
        if name == "AzureWebJobsStorage":
            continue  # empty on purpose: the host uses its identity (asserted above)
        if SECRET_NAME.search(name):
            assert name in secrets and value == references, name
        else:
            assert name not in secrets and "@Microsoft.KeyVault" not in str(value), name
    # the app never holds the owner role's credentials: migrations run from the operator's CLI
    assert "IRONLAYER_MIGRATION_DATABASE_URL" not in settings
    assert "IRONLAYER_AUTH_SECRET" not in settings and "IRONLAYER_GITHUB_TOKEN" not in settings
    # every client secret App Service Authentication reads is one of the referenced settings
    auth = block(model.resource(APP), "auth_settings_v2")
    assert block(auth, "active_directory_v2")["client_secret_setting_name"] in secrets


def test_app_settings_are_settings_the_app_reads_and_pass_its_production_check() -> None:
    settings = settings_at_defaults(load())
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    unknown = {name for name in settings if name.startswith("IRONLAYER_")} - set(sample)
    assert not unknown
    assert settings["IRONLAYER_ENVIRONMENT"] == "production"
    assert app_settings_problems(load_settings(settings)) == []


def test_each_role_is_granted_at_its_narrowest_scope() -> None:
    model = load()
    assignments = model.resources["azurerm_role_assignment"]
    roles = {(entry["role"], referenced(entry["scope"])) for entry in model.locals["app_roles"].values()}
    assert roles == {
        ("Storage Blob Data Contributor", "azurerm_storage_container.plans"),
        ("Key Vault Secrets User", "azurerm_key_vault.main"),
        ("Storage Blob Data Owner", "azurerm_storage_account.runtime"),
        ("Storage Queue Data Contributor", "azurerm_storage_account.runtime"),
        ("Storage Table Data Contributor", "azurerm_storage_account.runtime"),
        ("Monitoring Metrics Publisher", "azurerm_application_insights.main"),
    }
    app = assignments["app"]
    assert app["for_each"] == "${local.app_roles}" and app["scope"] == "${each.value.scope}"
    assert app["principal_id"] == "${local.app_principal_id}"
    assert model.locals["app_principal_id"] == f"${{{APP}.identity[0].principal_id}}"
    deployer = assignments["deployer_secrets_officer"]
    assert (deployer["role_definition_name"], referenced(deployer["scope"])) == (
        "Key Vault Secrets Officer", "azurerm_key_vault.main")
    assert set(assignments) == {"app", "deployer_secrets_officer"}


@pytest.mark.parametrize("resource", ["runtime-blob", "runtime-queue", "runtime-table", "plans-blob", "key-vault",
                                      "postgres"])
def test_data_services_have_private_endpoints(resource: str) -> None:
    endpoint: dict[str, Any] = load().locals["private_endpoints"][resource]
    target = referenced(endpoint["resource_id"])
    assert target in {"azurerm_storage_account.runtime", "azurerm_storage_account.plans", "azurerm_key_vault.main",
                      "azurerm_postgresql_flexible_server.main"}
    assert endpoint["zone"] in load().locals["private_dns_zones"]

