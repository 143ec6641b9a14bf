//! The OpenAPI 3.1 document, generated from the handlers' annotations and types (utoipa), served at
//! `/api/v1/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{campaigns, contacts, dnc, estimate, eta, keys, operators, problem, results, webhooks};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Dialer management API",
        description = "Campaigns, contacts, do-not-call list, results, progress and result webhooks of the \
outbound campaign dialer. Authenticate with `Authorization: Bearer KEY` (`dialer apikey create`). Errors are \
RFC 9457 problem details (`application/problem+json`) naming the field and, for batches, the row."
    ),
    paths(
        campaigns::create, campaigns::list, campaigns::get, campaigns::update,
        campaigns::start, campaigns::pause, campaigns::resume, campaigns::cancel, campaigns::progress,
        estimate::estimate,
        contacts::push, contacts::get, contacts::remove,
        results::page, results::export, results::recent_attempts, results::audit,
        dnc::check, dnc::add, dnc::remove,
        webhooks::set, webhooks::get, webhooks::remove, webhooks::deliveries, webhooks::replay, webhooks::replay_dead,
        keys::list, keys::create, keys::revoke,
        operators::token, operators::set_status, operators::list, operators::create, operators::live,
        operators::announce,
    ),
    components(schemas(
        problem::Problem, problem::FieldError, campaigns::Campaign, campaigns::CampaignPage, campaigns::CampaignPatch,
        campaigns::Progress, eta::Estimate, contacts::ContactsPush, contacts::ContactIn, contacts::PushReport,
        contacts::CreatedContact, contacts::Duplicate, contacts::ContactView, contacts::AttemptView,
        results::ResultView, results::ResultPage, results::ExportFormat, results::RecentAttemptView,
        dialer_core::store::AuditReport, dialer_core::domain::compliance::AuditEntry,
        dialer_core::domain::compliance::ZoneSource,
        dnc::DncStatus, dnc::DncEntryView, dnc::DncAdd,
        webhooks::EndpointSet, webhooks::EndpointCreated, webhooks::Endpoint, webhooks::DeliveryState,
        webhooks::DeliveryView, webhooks::DeliveryPage, webhooks::Replayed,
        keys::KeyCreate, keys::KeyView, keys::KeyCreated,
        operators::OperatorToken, operators::OperatorView, operators::StatusSet, operators::OperatorCreate,
        operators::OperatorCreated, operators::LiveView, operators::AnnouncementIn, operators::AnnouncementSent,
        dialer_core::store::LiveCall, dialer_core::store::TransferRow, dialer_core::domain::TransferState,
        estimate::EstimateRequest, dialer_core::estimate::EstimateReport, dialer_core::estimate::EstimateMix,
        dialer_core::estimate::SecsRange, dialer_core::estimate::MixSource, dialer_core::estimate::CurveHour,
        dialer_core::estimate::CostBreakdown,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "campaigns", description = "Create and run campaigns"),
        (name = "contacts", description = "Push contacts; read or remove one"),
        (name = "results", description = "What the calls produced"),
        (name = "dnc", description = "The do-not-call list"),
        (name = "webhooks", description = "Signed result webhooks (Standard Webhooks) and their deliveries"),
        (name = "keys", description = "API keys (a key grants only scopes it holds)"),
        (name = "operators", description = "Operators in the browser, live calls, the waiting room and announcements"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("dk_…")
                    .description(Some("An API key from `dialer apikey create`; each route needs the scope it lists."))
                    .build(),
            ),
        );
    }
}

/// The document as served.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
