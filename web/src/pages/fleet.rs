//! The fleet of a fleet-telemetry deployment, read through Fleetplane's proxy
//! (`/api/v1/deployments/{id}/fleet/...`) under Fleetplane's roles: the bikes (online or not,
//! battery, firmware, last seen, with filters), one bike (its latest state, its packets live, a
//! chart of speed and battery over the last hour, its certificates), and the quarantine.
//!
//! Viewers look; operators register bikes and issue certificates; admins revoke them.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;
use uuid::Uuid;

use crate::api::{self, ApiError, Role, fleet};
use crate::browser;
use crate::components::{
    ActionButton, Alert, AlertKind, Card, EmptyState, FormBanner, FormState, LoadError, Loading, PageHeader,
    RequireViewer, SelectField, SubmitButton, TextField, Time,
};
use crate::format::{self, encode};
use crate::pages::deployments::deployment_href;
use crate::pages::org::use_org_name;

/// How often the bikes list looks again.
const BIKES_REFRESH: Duration = Duration::from_secs(5);
/// How often a bike's page asks for its state and its last hour again (its packets arrive live).
const BIKE_REFRESH: Duration = Duration::from_secs(30);
/// Packets of the live feed kept on the page.
const FEED: usize = 20;
/// Points of the chart: the last hour by the minute, and what arrived live since.
const CHART_POINTS: usize = 600;

/// An answer that asking again will not change: signed out, not allowed, gone, or the fleet not
/// running; the page stops polling and shows it.
fn hopeless(error: &ApiError) -> bool {
    matches!(error.status, 401 | 403 | 404 | 409)
}

/// The page's organization and deployment, from its address.
fn use_fleet_params() -> (Memo<String>, Memo<String>) {
    let org = use_org_name();
    let params = use_params_map();
    let id = Memo::new(move |_| params.with(|params| params.get("id").unwrap_or_default()));
    (org, id)
}

fn fleet_href(org: &str, deployment: Uuid) -> String {
    format!("{}/fleet", deployment_href(org, deployment))
}

fn bike_href(org: &str, deployment: Uuid, device: &str) -> String {
    format!("{}/bikes/{}", fleet_href(org, deployment), encode(device))
}

/// The caller's role in the organization, once known (asked in the browser only).
fn use_role(org: StoredValue<String>) -> RwSignal<Option<Role>> {
    let role = RwSignal::new(None);
    Effect::new(move |_| {
        leptos::task::spawn_local(async move {
            let Some(name) = org.try_get_value() else { return };
            if let Ok(found) = api::get_org(&name).await {
                role.try_set(Some(found.role));
            }
        });
    });
    role
}

#[component]
fn FleetNav(org: StoredValue<String>, deployment: Uuid) -> impl IntoView {
    let org = org.get_value();
    view! {
        <nav class="tabs" aria-label="Fleet">
            <A href=fleet_href(&org, deployment) attr:class="tab" exact=true>"Bikes"</A>
            <A href=format!("{}/quarantine", fleet_href(&org, deployment)) attr:class="tab" exact=true>"Quarantine"</A>
            <A href=deployment_href(&org, deployment) attr:class="tab" exact=true>"Deployment"</A>
        </nav>
    }
}

// ---------------------------------------------------------------------------------------------
// Bikes

#[component]
pub fn FleetPage() -> impl IntoView {
    let (org, id) = use_fleet_params();
    view! {
        <Title text="Fleet"/>
        <RequireViewer>
            {move || match api::parse_id(&id.get()) {
                Ok(id) => view! { <Bikes org=StoredValue::new(org.get()) deployment=id/> }.into_any(),
                Err(error) => view! { <LoadError error/> }.into_any(),
            }}
        </RequireViewer>
    }
}

#[component]
fn Bikes(org: StoredValue<String>, deployment: Uuid) -> impl IntoView {
    let role = use_role(org);
    let online = RwSignal::new(String::new());
    let model = RwSignal::new(String::new());
    let firmware = RwSignal::new(String::new());
    let bikes = RwSignal::new(None::<Result<fleet::BikePage, ApiError>>);
    let kick = RwSignal::new(0u32);
    let query = Memo::new(move |_| {
        let mut parts = Vec::new();
        if !online.get().is_empty() {
            parts.push(format!("online={}", online.get()));
        }
        for (key, value) in [("model", model.get()), ("firmware_version", firmware.get())] {
            if !value.trim().is_empty() {
                parts.push(format!("{key}={}", encode(value.trim())));
            }
        }
        parts.push("limit=200".to_owned());
        parts.join("&")
    });
    Effect::new(move |_| {
        kick.track();
        let query = query.get();
        browser::poll(move || {
            let query = query.clone();
            async move {
                let result = api::fleet_bikes(deployment, &query).await;
                let stop = result.as_ref().is_err_and(hopeless);
                bikes.try_set(Some(result));
                (!stop).then_some(BIKES_REFRESH)
            }
        });
    });
    let broker = LocalResource::new(move || api::fleet_broker(deployment));
    let filter_form = FormState::new();
    view! {
        <PageHeader
            title="Fleet".to_owned()
            subtitle=Signal::derive(move || "Bikes, their state and certificates, through Fleetplane".to_owned())
            eyebrow=Box::new(move || view! { <A href=deployment_href(&org.get_value(), deployment)>"← Deployment"</A> }.into_any())
        />
        <FleetNav org deployment/>
        <div class="stack-lg">
            {move || {
                broker.get().and_then(Result::ok).map(|broker| view! {
                    <p class="muted" data-test="fleet-broker">
                        "Bikes connect to " <span class="mono">{broker.url}</span> " with their own certificates."
                    </p>
                })
            }}
            <Card title="Bikes">
                <div class="stack">
                    <div class="grid grid-3 filters" data-test="bike-filters">
                        <SelectField
                            id="filter-online"
                            name="online"
                            label="Seen"
                            value=online
                            form=filter_form
                            options=vec![("", "All bikes"), ("true", "Online"), ("false", "Offline")]
                        />
                        <TextField id="filter-model" name="model" label="Model" value=model form=filter_form placeholder="any"/>
                        <TextField id="filter-firmware" name="firmware_version" label="Firmware" value=firmware form=filter_form placeholder="any"/>
                    </div>
                    {move || match bikes.get() {
                        None => view! { <Loading/> }.into_any(),
                        Some(Err(error)) => view! { <LoadError error/> }.into_any(),
                        Some(Ok(page)) if page.items.is_empty() => view! {
                            <EmptyState title="No bikes here">
                                "Bikes registered in this fleet appear here, with their state as they report it."
                            </EmptyState>
                        }
                        .into_any(),
                        Some(Ok(page)) => view! { <BikeTable org deployment items=page.items/> }.into_any(),
                    }}
                </div>
            </Card>
            {move || {
                role.get().is_some_and(Role::operates_clusters).then(|| view! {
                    <RegisterBike deployment on_done=move || kick.update(|n| *n += 1)/>
                })
            }}
        </div>
    }
}

#[component]
fn BikeTable(org: StoredValue<String>, deployment: Uuid, items: Vec<fleet::BikeView>) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table class="table table-stack" data-test="bike-table">
                <thead>
                    <tr>
                        <th scope="col">"Bike"</th>
                        <th scope="col">"Seen"</th>
                        <th scope="col">"Battery"</th>
                        <th scope="col">"Speed"</th>
                        <th scope="col">"Model"</th>
                        <th scope="col">"Firmware"</th>
                        <th scope="col">"Last seen"</th>
                    </tr>
                </thead>
                <tbody>
                    {items
                        .into_iter()
                        .map(|bike| {
                            let href = bike_href(&org.get_value(), deployment, &bike.device_id);
                            let telemetry = bike.latest.as_ref().and_then(|latest| latest.telemetry.clone());
                            let name = bike.display_name.clone().unwrap_or_else(|| bike.serial.clone());
                            view! {
                                <tr data-test="bike-row" data-device=bike.device_id.clone() data-online=bike.online.to_string()>
                                    <td>
                                        <A href=href attr:class="strong">{name}</A>
                                        <div class="mono small muted">{bike.device_id.clone()}</div>
                                    </td>
                                    <td data-label="Seen"><OnlineBadge online=bike.online decommissioned=bike.decommissioned_at.is_some()/></td>
                                    <td data-label="Battery">
                                        {telemetry.as_ref().map_or_else(
                                            || "—".to_owned(),
                                            |t| format!("{:.0} %", t.battery_soc_pct),
                                        )}
                                    </td>
                                    <td data-label="Speed">
                                        {telemetry.as_ref().map_or_else(|| "—".to_owned(), |t| format!("{:.1} km/h", t.speed_kmh))}
                                    </td>
                                    <td data-label="Model">{bike.model.clone()}</td>
                                    <td data-label="Firmware" class="mono">{bike.firmware_version.clone()}</td>
                                    <td data-label="Last seen">
                                        {match bike.last_seen {
                                            Some(at) => view! { <Time value=at relative=true/> }.into_any(),
                                            None => view! { <span class="muted">"never"</span> }.into_any(),
                                        }}
                                    </td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        </div>
    }
}

#[component]
fn OnlineBadge(online: bool, decommissioned: bool) -> impl IntoView {
    let (tone, label, status) = match (decommissioned, online) {
        (true, _) => ("badge-muted", "Decommissioned", "decommissioned"),
        (false, true) => ("badge-success", "Online", "online"),
        (false, false) => ("badge-neutral", "Offline", "offline"),
    };
    view! {
        <span class=format!("badge badge-status {tone}") class:badge-live=online data-test="bike-online" data-status=status>
            {label}
        </span>
    }
}

#[component]
fn RegisterBike(deployment: Uuid, #[prop(into)] on_done: Callback<()>) -> impl IntoView {
    let serial = RwSignal::new(String::new());
    let model = RwSignal::new(String::new());
    let firmware = RwSignal::new(String::new());
    let name = RwSignal::new(String::new());
    let form = FormState::new();
    let registered = RwSignal::new(None::<fleet::BikeView>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let bike = fleet::NewBike {
            serial: serial.get_untracked().trim().to_owned(),
            model: model.get_untracked().trim().to_owned(),
            firmware_version: firmware.get_untracked().trim().to_owned(),
            display_name: Some(name.get_untracked().trim().to_owned()).filter(|n| !n.is_empty()),
        };
        form.run(async move { api::fleet_register_bike(deployment, &bike).await }, move |bike| {
            registered.set(Some(bike));
            serial.set(String::new());
            name.set(String::new());
            on_done.run(());
        });
    };
    view! {
        <Card title="Register a bike" description="Then issue its certificate on its page: the bike connects with it.">
            <form class="form stack" on:submit=submit data-test="register-bike" novalidate>
                {move || registered.get().map(|bike| view! {
                    <Alert kind=AlertKind::Success>{format!("Registered {} as {}.", bike.serial, bike.device_id)}</Alert>
                })}
                <FormBanner form fields=&["serial", "model", "firmware_version", "display_name"]/>
                <div class="grid grid-2">
                    <TextField id="bike-serial" name="serial" label="Serial" value=serial form required=true/>
                    <TextField id="bike-model" name="model" label="Model" value=model form required=true/>
                    <TextField id="bike-firmware" name="firmware_version" label="Firmware version" value=firmware form required=true placeholder="1.0.0"/>
                    <TextField id="bike-name" name="display_name" label="Name" value=name form mark_optional=true/>
                </div>
                <div class="form-actions"><SubmitButton form label="Register" busy_label="Registering…"/></div>
            </form>
        </Card>
    }
}

// ---------------------------------------------------------------------------------------------
// One bike

#[component]
pub fn BikePage() -> impl IntoView {
    let (org, id) = use_fleet_params();
    let params = use_params_map();
    let device = Memo::new(move |_| params.with(|params| params.get("device").unwrap_or_default()));
    view! {
        <Title text="Bike"/>
        <RequireViewer>
            {move || match api::parse_id(&id.get()) {
                Ok(id) => view! { <Bike org=StoredValue::new(org.get()) deployment=id device=device.get()/> }.into_any(),
                Err(error) => view! { <LoadError error/> }.into_any(),
            }}
        </RequireViewer>
    }
}

/// A point of the chart.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Point {
    at: DateTime<Utc>,
    speed_kmh: f64,
    battery_pct: f64,
}

#[component]
fn Bike(org: StoredValue<String>, deployment: Uuid, device: String) -> impl IntoView {
    let device = StoredValue::new(device);
    let role = use_role(org);
    let bike = RwSignal::new(None::<Result<fleet::BikeView, ApiError>>);
    let points = RwSignal::new(Vec::<Point>::new());
    let feed = RwSignal::new(Vec::<(String, fleet::RecordView)>::new());
    let latest = RwSignal::new(None::<fleet::TelemetryView>);
    Effect::new(move |_| {
        browser::poll(move || async move {
            let device = device.try_get_value()?;
            let found = api::fleet_bike(deployment, &device).await;
            let stop = found.as_ref().is_err_and(hopeless);
            if let Ok(found) = &found
                && let Some(telemetry) = found.latest.as_ref().and_then(|l| l.telemetry.clone())
            {
                latest.try_update(|shown| {
                    if shown.as_ref().is_none_or(|s| s.recorded_at <= telemetry.recorded_at) {
                        *shown = Some(telemetry);
                    }
                });
            }
            bike.try_set(Some(found));
            if let Some(now) = browser::now() {
                let from = format::rfc3339(now - TimeDelta::hours(1));
                let to = format::rfc3339(now + TimeDelta::minutes(1));
                if let Ok(page) = api::fleet_telemetry(deployment, &device, (&from, &to), "1m", &CHARTED).await {
                    let history: Vec<Point> =
                        page.buckets.unwrap_or_default().iter().filter_map(bucket_point).collect();
                    points.try_update(|shown| *shown = merge(&history, shown, now - TimeDelta::hours(1)));
                }
            }
            (!stop).then_some(BIKE_REFRESH)
        })
    });
    // Packets as they arrive; the browser resumes the stream after a drop with Last-Event-ID.
    const KINDS: &[&str] = &["telemetry", "trip_start", "trip_end", "fault", "boot"];
    let live_url = api::fleet_path(deployment, &format!("/bikes/{}/live", encode(&device.get_value())));
    Effect::new(move |_| {
        browser::listen(&live_url, KINDS, move |kind, data| {
            let Ok(record) = serde_json::from_str::<fleet::RecordView>(&data) else { return true };
            if kind == "telemetry"
                && let Ok(telemetry) = serde_json::from_value::<fleet::TelemetryView>(record.body.clone())
            {
                let point = Point {
                    at: telemetry.recorded_at,
                    speed_kmh: f64::from(telemetry.speed_kmh),
                    battery_pct: f64::from(telemetry.battery_soc_pct),
                };
                points.try_update(|shown| {
                    if shown.last().is_none_or(|last| last.at < point.at) {
                        shown.push(point);
                        let excess = shown.len().saturating_sub(CHART_POINTS);
                        shown.drain(..excess);
                    }
                });
                latest.try_set(Some(telemetry));
            }
            feed.try_update(|feed| {
                feed.insert(0, (kind.to_owned(), record));
                feed.truncate(FEED);
            });
            true
        });
    });
    let title = Memo::new(move |_| {
        bike.with(|b| match b {
            Some(Ok(bike)) => bike.display_name.clone().unwrap_or_else(|| bike.serial.clone()),
            _ => device.get_value(),
        })
    });
    view! {
        <Title text=move || title.get()/>
        <PageHeader
            title=Signal::derive(move || title.get())
            subtitle=Signal::derive(move || device.get_value())
            eyebrow=Box::new(move || view! { <A href=fleet_href(&org.get_value(), deployment)>"← Fleet"</A> }.into_any())
            actions=Box::new(move || view! {
                {move || bike.get().and_then(Result::ok).map(|b| view! {
                    <OnlineBadge online=b.online decommissioned=b.decommissioned_at.is_some()/>
                })}
            }.into_any())
        />
        <FleetNav org deployment/>
        <div class="stack-lg">
            {move || match bike.get() {
                None => view! { <Loading/> }.into_any(),
                Some(Err(error)) => view! { <LoadError error/> }.into_any(),
                Some(Ok(found)) => view! { <BikeFacts bike=found latest/> }.into_any(),
            }}
            <Card title="Speed and battery, last hour" description="A point per minute (the average), then every packet as it arrives.">
                <Chart points/>
            </Card>
            <Card title="Live">
                {move || {
                    let items = feed.get();
                    if items.is_empty() {
                        return view! { <p class="muted" data-test="live-waiting">"Waiting for the bike's next packet…"</p> }.into_any();
                    }
                    view! {
                        <ul class="feed" data-test="live-feed">
                            {items.into_iter().map(|(kind, record)| { let tag = kind.clone(); view! {
                                <li data-kind=tag>
                                    <span class="mono small muted">{format!("#{}", record.seq)}</span> " "
                                    <span class="strong">{kind}</span> " "
                                    <Time value=record.recorded_at/>
                                    " " <span class="small">{summary(&record)}</span>
                                </li>
                            }}).collect_view()}
                        </ul>
                    }
                    .into_any()
                }}
            </Card>
            <Certificates deployment device=device.get_value() role/>
        </div>
    }
}

/// What the bike's chart draws: the fields its history asks for.
const CHARTED: [&str; 2] = ["speed_kmh", "battery_soc_pct"];

/// The average speed and battery of a bucket, if it has both.
fn bucket_point(bucket: &fleet::BucketView) -> Option<Point> {
    Some(Point {
        at: bucket.start,
        speed_kmh: bucket.stats.get(CHARTED[0])?.avg,
        battery_pct: bucket.stats.get(CHARTED[1])?.avg,
    })
}

/// The history from the store, then the live points newer than its last, all since `since`.
fn merge(history: &[Point], live: &[Point], since: DateTime<Utc>) -> Vec<Point> {
    let last = history.last().map(|p| p.at);
    let mut points: Vec<Point> = history.to_vec();
    points.extend(live.iter().filter(|p| last.is_none_or(|last| p.at > last + TimeDelta::minutes(1))).copied());
    points.retain(|p| p.at >= since);
    let excess = points.len().saturating_sub(CHART_POINTS);
    points.drain(..excess);
    points
}

/// One line about a packet.
fn summary(record: &fleet::RecordView) -> String {
    let body = &record.body;
    let number = |key: &str| body.get(key).and_then(serde_json::Value::as_f64);
    match record.kind.as_str() {
        "telemetry" => format!(
            "{:.1} km/h · battery {:.0} % · assist {}",
            number("speed_kmh").unwrap_or_default(),
            number("battery_soc_pct").unwrap_or_default(),
            body.get("assist_level").and_then(serde_json::Value::as_u64).unwrap_or_default()
        ),
        "trip_end" => format!("{:.1} km", number("distance_m").unwrap_or_default() / 1000.0),
        "fault" => format!(
            "{} ({})",
            body.get("code").map(ToString::to_string).unwrap_or_default(),
            body.get("severity").and_then(serde_json::Value::as_str).unwrap_or("")
        ),
        "boot" => {
            format!("firmware {}", body.get("firmware_version").and_then(serde_json::Value::as_str).unwrap_or("?"))
        }
        _ => String::new(),
    }
}

#[component]
fn BikeFacts(bike: fleet::BikeView, latest: RwSignal<Option<fleet::TelemetryView>>) -> impl IntoView {
    let fact = move |pick: fn(&fleet::TelemetryView) -> String| {
        move || latest.with(|t| t.as_ref().map_or_else(|| "—".to_owned(), pick))
    };
    view! {
        <div class="grid grid-main">
            <Card title="Now">
                <dl class="details details-flush" data-test="bike-latest">
                    <div><dt>"Speed"</dt><dd data-test="bike-speed">{fact(|t| format!("{:.1} km/h", t.speed_kmh))}</dd></div>
                    <div><dt>"Battery"</dt><dd data-test="bike-battery">{fact(|t| format!("{:.0} % · {:.1} V · {:.1} °C", t.battery_soc_pct, t.battery_voltage_v, t.battery_temp_c))}</dd></div>
                    <div><dt>"Assist"</dt><dd>{fact(|t| format!("level {} · motor {:.0} W", t.assist_level, t.motor_power_w))}</dd></div>
                    <div><dt>"Position"</dt><dd class="mono">{fact(|t| format!("{:.5}, {:.5} · {} fix", t.lat, t.lon, t.gps_fix))}</dd></div>
                    <div><dt>"Odometer"</dt><dd>{fact(|t| format!("{:.1} km", t.odometer_m as f64 / 1000.0))}</dd></div>
                    <div><dt>"Recorded"</dt><dd>{move || latest.with(|t| t.as_ref().map(|t| view! { <Time value=t.recorded_at relative=true/> }))}</dd></div>
                </dl>
            </Card>
            <Card title="Bike">
                <dl class="details details-flush">
                    <div><dt>"Serial"</dt><dd class="mono">{bike.serial}</dd></div>
                    <div><dt>"Model"</dt><dd>{bike.model}</dd></div>
                    <div><dt>"Firmware"</dt><dd class="mono">{bike.firmware_version}</dd></div>
                    <div><dt>"Registered"</dt><dd><Time value=bike.registered_at/></dd></div>
                    <div>
                        <dt>"Last seen"</dt>
                        <dd>{bike.last_seen.map(|at| view! { <Time value=at relative=true/> })}</dd>
                    </div>
                </dl>
            </Card>
        </div>
    }
}

/// Speed (km/h, left scale) and battery (%, right scale) as two lines over time.
#[component]
fn Chart(points: RwSignal<Vec<Point>>) -> impl IntoView {
    const W: f64 = 720.0;
    const H: f64 = 220.0;
    const PAD: f64 = 28.0;
    let paths = Memo::new(move |_| {
        points.with(|points| {
            let (Some(first), Some(last)) = (points.first(), points.last()) else { return None };
            let span = (last.at - first.at).num_milliseconds().max(1) as f64;
            let top_speed = points.iter().map(|p| p.speed_kmh).fold(10.0_f64, f64::max).ceil();
            let x = |p: &Point| PAD + (p.at - first.at).num_milliseconds() as f64 / span * (W - 2.0 * PAD);
            let y = |value: f64, max: f64| H - PAD - value.clamp(0.0, max) / max * (H - 2.0 * PAD);
            let line = |value: fn(&Point) -> f64, max: f64| {
                points.iter().map(|p| format!("{:.1},{:.1}", x(p), y(value(p), max))).collect::<Vec<_>>().join(" ")
            };
            let clock = |at: DateTime<Utc>| at.format("%H:%M:%S").to_string();
            let span = (clock(first.at), clock(last.at));
            Some((line(|p| p.speed_kmh, top_speed), line(|p| p.battery_pct, 100.0), top_speed, points.len(), span))
        })
    });
    move || match paths.get() {
        None => view! { <p class="muted" data-test="bike-chart-empty">"No telemetry in the last hour."</p> }.into_any(),
        Some((speed, battery, top_speed, count, (start, end))) => view! {
            <figure class="chart" data-test="bike-chart" data-points=count.to_string()>
                <svg viewBox=format!("0 0 {W} {H}") role="img" aria-label="Speed and battery over the last hour">
                    <line x1=PAD y1=H - PAD x2=W - PAD y2=H - PAD class="chart-axis"/>
                    <text x=4 y=PAD class="chart-label">{format!("{top_speed:.0} km/h")}</text>
                    <text x=W - PAD y=PAD class="chart-label" text-anchor="end">"100 %"</text>
                    <text x=PAD y=H - 8.0 class="chart-label">{format!("{start} UTC")}</text>
                    <text x=W - PAD y=H - 8.0 class="chart-label" text-anchor="end">{format!("{end} UTC")}</text>
                    <polyline points=speed class="chart-line chart-speed" data-test="chart-speed"/>
                    <polyline points=battery class="chart-line chart-battery" data-test="chart-battery"/>
                </svg>
                <figcaption class="chart-legend small">
                    <span class="chart-key chart-speed">"Speed"</span>
                    <span class="chart-key chart-battery">"Battery"</span>
                </figcaption>
            </figure>
        }
        .into_any(),
    }
}

#[component]
fn Certificates(deployment: Uuid, device: String, role: RwSignal<Option<Role>>) -> impl IntoView {
    let device = StoredValue::new(device);
    let list = RwSignal::new(None::<Result<Vec<fleet::CertificateView>, ApiError>>);
    let kick = RwSignal::new(0u32);
    Effect::new(move |_| {
        kick.track();
        leptos::task::spawn_local(async move {
            let Some(device) = device.try_get_value() else { return };
            let result = api::fleet_certificates(deployment, &device).await.map(|l| l.items);
            list.try_set(Some(result));
        });
    });
    let issue = FormState::new();
    let revoke = FormState::new();
    let issued = RwSignal::new(None::<fleet::IssuedView>);
    let reason = RwSignal::new("key_compromise".to_owned());
    let on_issue = move |()| {
        let device = device.get_value();
        issue.run(async move { api::fleet_issue_certificate(deployment, &device).await }, move |done| {
            issued.set(Some(done));
            kick.update(|n| *n += 1);
        });
    };
    view! {
        <Card title="Certificates" description="What the bike connects with. A generated key is shown once: download it now.">
            <div class="stack">
                <FormBanner form=issue fields=&[]/>
                <FormBanner form=revoke fields=&[]/>
                {move || issued.get().and_then(|done| done.bundle.map(|bundle| {
                    let serial = done.certificate.serial.clone();
                    view! { <Bundle bundle serial/> }
                }))}
                {move || match list.get() {
                    None => view! { <Loading/> }.into_any(),
                    Some(Err(error)) => view! { <LoadError error/> }.into_any(),
                    Some(Ok(items)) if items.is_empty() => view! {
                        <EmptyState title="No certificates">"Issue one so that the bike can connect."</EmptyState>
                    }
                    .into_any(),
                    Some(Ok(items)) => view! {
                        <div class="table-wrap">
                            <table class="table table-stack" data-test="certificate-table">
                                <thead>
                                    <tr>
                                        <th scope="col">"Serial"</th>
                                        <th scope="col">"From"</th>
                                        <th scope="col">"Valid until"</th>
                                        <th scope="col">"Status"</th>
                                        <th scope="col"><span class="visually-hidden">"Actions"</span></th>
                                    </tr>
                                </thead>
                                <tbody>
                                    {items.into_iter().map(|certificate| {
                                        let serial = StoredValue::new(certificate.serial.clone());
                                        let revoked = certificate.revoked_at.is_some();
                                        view! {
                                            <tr data-test="certificate-row" data-serial=certificate.serial.clone() data-revoked=revoked.to_string()>
                                                <td class="mono small">{certificate.serial.clone()}</td>
                                                <td data-label="From">{if certificate.source == "csr" { "the bike's CSR" } else { "a generated key" }}</td>
                                                <td data-label="Valid until"><Time value=certificate.not_after date_only=true/></td>
                                                <td data-label="Status">
                                                    {match (certificate.revoked_at, certificate.revocation_reason) {
                                                        (Some(at), reason) => view! {
                                                            <span class="badge badge-danger">"Revoked"</span>
                                                            " " <span class="small muted">{reason.unwrap_or_default()}</span>
                                                            " " <Time value=at relative=true/>
                                                        }.into_any(),
                                                        _ => view! { <span class="badge badge-success">"Valid"</span> }.into_any(),
                                                    }}
                                                </td>
                                                <td>
                                                    {move || (!revoked && role.get().is_some_and(Role::manages_clusters)).then(|| view! {
                                                        <ActionButton
                                                            form=revoke
                                                            label="Revoke"
                                                            busy_label="Revoking…"
                                                            test="revoke-certificate"
                                                            class="btn btn-danger btn-sm"
                                                            on_click=move |()| {
                                                                let (serial, why) = (serial.get_value(), reason.get_untracked());
                                                                revoke.run(
                                                                    async move { api::fleet_revoke_certificate(deployment, &serial, &why).await },
                                                                    move |_| kick.update(|n| *n += 1),
                                                                );
                                                            }
                                                        />
                                                    })}
                                                </td>
                                            </tr>
                                        }
                                    }).collect_view()}
                                </tbody>
                            </table>
                        </div>
                    }
                    .into_any(),
                }}
                <div class="form-actions">
                    {move || role.get().is_some_and(Role::manages_clusters).then(|| view! {
                        <SelectField
                            id="revocation-reason"
                            name="reason"
                            label="Reason to revoke"
                            value=reason
                            form=revoke
                            options=vec![
                                ("key_compromise", "Key compromised"),
                                ("superseded", "Superseded"),
                                ("affiliation_changed", "Owner changed"),
                                ("cessation_of_operation", "Bike retired"),
                                ("unspecified", "Unspecified"),
                            ]
                        />
                    })}
                    {move || role.get().is_some_and(Role::operates_clusters).then(|| view! {
                        <ActionButton form=issue label="Issue a certificate" busy_label="Issuing…" test="issue-certificate" class="btn btn-primary" on_click=on_issue/>
                    })}
                </div>
            </div>
        </Card>
    }
}

/// The generated key with its certificate and CA chain, as files to download, shown once.
#[component]
fn Bundle(bundle: fleet::BundleView, serial: String) -> impl IntoView {
    let file = |text: &str| format!("data:application/x-pem-file;charset=utf-8,{}", encode(text));
    let whole = format!("{}{}{}", bundle.cert_pem, bundle.key_pem, bundle.ca_chain_pem);
    view! {
        <Alert kind=AlertKind::Warning title="Download the key now: it is not kept and cannot be shown again">
            <p class="download-links" data-test="certificate-bundle" data-serial=serial.clone()>
                <a href=file(&bundle.cert_pem) download=format!("{serial}.crt.pem")>"Certificate"</a> " · "
                <a href=file(&bundle.key_pem) download=format!("{serial}.key.pem") data-test="download-key">"Private key"</a> " · "
                <a href=file(&bundle.ca_chain_pem) download="fleet-ca-chain.pem">"CA chain"</a> " · "
                <a href=file(&whole) download=format!("{serial}.bundle.pem")>"All in one file"</a>
            </p>
        </Alert>
    }
}

// ---------------------------------------------------------------------------------------------
// Quarantine

#[component]
pub fn QuarantinePage() -> impl IntoView {
    let (org, id) = use_fleet_params();
    view! {
        <Title text="Quarantine"/>
        <RequireViewer>
            {move || match api::parse_id(&id.get()) {
                Ok(id) => view! { <Quarantine org=StoredValue::new(org.get()) deployment=id/> }.into_any(),
                Err(error) => view! { <LoadError error/> }.into_any(),
            }}
        </RequireViewer>
    }
}

#[component]
fn Quarantine(org: StoredValue<String>, deployment: Uuid) -> impl IntoView {
    let page = RwSignal::new(None::<Result<fleet::QuarantinePage, ApiError>>);
    Effect::new(move |_| {
        browser::poll(move || async move {
            let result = api::fleet_quarantine(deployment).await;
            let stop = result.as_ref().is_err_and(hopeless);
            page.try_set(Some(result));
            (!stop).then_some(BIKES_REFRESH)
        })
    });
    view! {
        <PageHeader
            title="Quarantine".to_owned()
            subtitle=Signal::derive(|| "Packets the fleet did not store, and why".to_owned())
            eyebrow=Box::new(move || view! { <A href=fleet_href(&org.get_value(), deployment)>"← Fleet"</A> }.into_any())
        />
        <FleetNav org deployment/>
        <Card>
            {move || match page.get() {
                None => view! { <Loading/> }.into_any(),
                Some(Err(error)) => view! { <LoadError error/> }.into_any(),
                Some(Ok(page)) if page.items.is_empty() => view! {
                    <EmptyState title="Nothing in quarantine">"Packets that are malformed, out of range or from revoked bikes appear here."</EmptyState>
                }
                .into_any(),
                Some(Ok(page)) => view! {
                    <div class="table-wrap">
                        <table class="table table-stack" data-test="quarantine-table">
                            <thead>
                                <tr>
                                    <th scope="col">"Received"</th>
                                    <th scope="col">"Reason"</th>
                                    <th scope="col">"Bike"</th>
                                    <th scope="col">"Topic"</th>
                                    <th scope="col">"Detail"</th>
                                    <th scope="col">"Size"</th>
                                </tr>
                            </thead>
                            <tbody>
                                {page.items.into_iter().map(|entry| { let reason = entry.reason.clone(); view! {
                                    <tr data-test="quarantine-row" data-reason=reason>
                                        <td><Time value=entry.received_at relative=true/></td>
                                        <td data-label="Reason"><span class="badge badge-warning">{entry.reason}</span></td>
                                        <td data-label="Bike" class="mono small">{entry.device_id.unwrap_or_else(|| "—".to_owned())}</td>
                                        <td data-label="Topic" class="mono small">{entry.topic}</td>
                                        <td data-label="Detail">{entry.detail}</td>
                                        <td data-label="Size">{format::bytes(entry.payload_len as u64)}</td>
                                    </tr>
                                }}).collect_view()}
                            </tbody>
                        </table>
                    </div>
                }
                .into_any(),
            }}
        </Card>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).expect("time")
    }

    fn point(minute: i64, speed: f64) -> Point {
        Point { at: at(minute), speed_kmh: speed, battery_pct: 80.0 }
    }

    #[test]
    fn the_chart_keeps_the_history_and_only_newer_live_points() {
        let history = [point(0, 10.0), point(1, 12.0)];
        let live = [point(1, 99.0), point(3, 20.0), point(4, 21.0)];
        let merged = merge(&history, &live, at(0));
        assert_eq!(merged.iter().map(|p| p.speed_kmh).collect::<Vec<_>>(), [10.0, 12.0, 20.0, 21.0]);
        // Older than the window: gone.
        assert_eq!(merge(&history, &live, at(3)).len(), 2);
        assert_eq!(merge(&[], &live, at(0)).len(), 3);
    }

    #[test]
    fn packets_read_as_one_line() {
        let record = |kind: &str, body: serde_json::Value| fleet::RecordView {
            seq: 1,
            recorded_at: at(0),
            received_at: at(0),
            kind: kind.to_owned(),
            body,
        };
        let telemetry =
            record("telemetry", serde_json::json!({ "speed_kmh": 21.34, "battery_soc_pct": 80.4, "assist_level": 2 }));
        assert_eq!(summary(&telemetry), "21.3 km/h · battery 80 % · assist 2");
        assert_eq!(summary(&record("trip_end", serde_json::json!({ "distance_m": 5400.0 }))), "5.4 km");
        assert_eq!(summary(&record("boot", serde_json::json!({ "firmware_version": "1.2.0" }))), "firmware 1.2.0");
    }
}
