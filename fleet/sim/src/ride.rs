//! The ride model: one bike's life as pure arithmetic on simulated time, with no I/O and no
//! clock of its own, so that hours of riding take milliseconds in a test.
//!
//! A bike is parked, then rides a trip, then parks again. On a trip it follows the streets
//! of a grid around the centre (blocks of [`RideSettings::block_m`], streets along the grid's
//! axes), turning at corners, stopping at red lights and braking for turns, and keeps within
//! [`RideSettings::radius_m`] of the centre. Its speed comes from a cruise speed the rider
//! likes, the grade of the street and the corner ahead; the power it takes comes from
//! rolling resistance, drag, climbing and accelerating, shared between the rider and the
//! motor by the assist level. The motor's electrical power (plus the electronics) drains the
//! [`Battery`], so the charge only falls while riding. The GPS has good and bad spells.
//!
//! [`Ride::advance`] moves the bike on by some time and returns what it recorded in it, each
//! [`Output`] stamped with the simulated time it happened at: a [`Boot`] first, then
//! [`Telemetry`] every [`RideSettings::sample_every`] while riding (and every
//! [`RideSettings::heartbeat_every`] while parked), [`TripStart`] and [`TripEnd`] with the
//! bike's own totals, now and then a [`Fault`], and, rarely, a reboot.

use std::time::Duration;

use fleet_proto::{Boot, Fault, GpsFix, ResetReason, Severity, Telemetry, TripEnd, TripStart, envelope::Body};
use rand::{RngExt, SeedableRng, rngs::StdRng};

use crate::{
    battery::Battery,
    duration::DurationRange,
    geo::{Dir, Frame, LatLon, Terrain},
};

/// The longest step of the physics (s): short enough that braking for a corner lands within
/// centimetres and the energy integral is exact to far below a watt-hour.
const MAX_STEP_S: f64 = 0.2;
/// Rider, bike and luggage (kg).
const MASS_KG: f64 = 100.0;
const GRAVITY: f64 = 9.81;
/// Rolling resistance coefficient of city tyres on asphalt.
const ROLLING: f64 = 0.006;
/// Half the air density times the drag area of an upright rider (kg/m).
const DRAG: f64 = 0.5 * 1.2 * 0.55;
/// The motor's peak mechanical power (W) and its efficiency.
const MOTOR_PEAK_W: f64 = 500.0;
const MOTOR_EFFICIENCY: f64 = 0.8;
/// Above this speed (km/h) the motor stops helping, as EU pedelecs do; it fades out over the
/// last kilometre per hour.
const ASSIST_CUTOFF_KMH: f64 = 25.0;
/// The motor's power per watt of the rider's at each assist level.
const ASSIST_RATIO: [f64; 6] = [0.0, 0.5, 1.0, 1.5, 2.2, 3.0];
/// The highest assist level.
pub const MAX_ASSIST: u32 = 5;
/// Below this charge (%) the controller gives no assist, to save what is left.
const RESERVE_PCT: f64 = 3.0;
/// The display, lights and controller (W) while the bike is on, and its BMS while parked.
const ELECTRONICS_W: f64 = 3.0;
const STANDBY_W: f64 = 0.3;
/// A dock's charger (W).
const CHARGER_W: f64 = 250.0;
/// How firmly riders brake for a corner, and the hardest they brake (m/s²).
const BRAKE: f64 = 1.5;
const HARD_BRAKE: f64 = 3.0;
/// How fast a rider takes a turn, and creeps up to a stop line (m/s).
const TURN_SPEED: f64 = 3.5;
const CREEP_SPEED: f64 = 0.8;
/// Never faster than this (km/h), however steep the hill.
pub const TOP_SPEED_KMH: f64 = 40.0;
/// How fast the motor's temperature follows its load (s), and how warm a watt keeps it (°C).
const MOTOR_THERMAL_S: f64 = 240.0;
const MOTOR_C_PER_W: f64 = 0.1;
/// One GPS bad spell every this long, on average (s).
const GPS_SPELL_EVERY_S: f64 = 300.0;
/// A low-charge warning below this charge (%), armed again above the second.
const LOW_CHARGE_PCT: f64 = 15.0;
const LOW_CHARGE_REARM_PCT: f64 = 30.0;

/// The faults a bike raises now and then, unprompted: code, severity, detail.
const FAULTS: [(&str, Severity, &str); 6] = [
    ("MOTOR_HALL_SENSOR", Severity::Warning, "hall sensor signal lost for 120 ms"),
    ("BRAKE_SENSOR_STUCK", Severity::Info, "brake lever sensor read pressed while pedalling"),
    ("GPS_ANTENNA_OPEN", Severity::Warning, "GPS antenna current out of range"),
    ("BMS_CELL_IMBALANCE", Severity::Warning, "cell voltage spread above 80 mV"),
    ("CONTROLLER_OVERCURRENT", Severity::Critical, "motor controller current limit tripped"),
    ("DISPLAY_COMM_TIMEOUT", Severity::Info, "no reply from the display for 2 s"),
];

/// Why a bike restarts by itself.
const REBOOT_REASONS: [ResetReason; 4] =
    [ResetReason::Watchdog, ResetReason::Software, ResetReason::Brownout, ResetReason::FirmwareUpdate];

/// How the bikes ride: the city, the rhythm of trips and packets, the hardware.
#[derive(Clone, Debug)]
pub struct RideSettings {
    /// The middle of the street grid.
    pub centre: LatLon,
    /// How far from the centre bikes roam (m): past it, they turn back.
    pub radius_m: f64,
    /// The side of a block (m).
    pub block_m: f64,
    /// One telemetry packet this often while riding.
    pub sample_every: Duration,
    /// One telemetry packet this often while parked; `None` for none.
    pub heartbeat_every: Option<Duration>,
    /// How long a trip lasts, before the rider makes for a stop.
    pub trip_length: DurationRange,
    /// How long a bike stays parked between trips.
    pub park_length: DurationRange,
    /// A bike's first trip starts within this long of it booting.
    pub first_trip_within: Duration,
    /// The speed a rider likes to cruise at on the flat (km/h), drawn for each trip.
    pub cruise_kmh: (f64, f64),
    /// The chance that a corner has a red light.
    pub light_chance: f64,
    /// How long a red light holds a bike.
    pub light_wait: DurationRange,
    /// How often a bike raises a fault, on average.
    pub faults_per_hour: f64,
    /// How often a bike reboots by itself while parked, on average.
    pub reboots_per_hour: f64,
    /// The air's temperature (°C).
    pub ambient_c: f64,
    /// The battery's capacity (Wh).
    pub battery_wh: f64,
    pub terrain: Terrain,
}

impl Default for RideSettings {
    fn default() -> Self {
        Self {
            centre: LatLon::AMSTERDAM,
            radius_m: 2_500.0,
            block_m: 100.0,
            sample_every: Duration::from_secs(1),
            heartbeat_every: Some(Duration::from_secs(60)),
            trip_length: DurationRange { min: Duration::from_secs(120), max: Duration::from_secs(600) },
            park_length: DurationRange { min: Duration::from_secs(15), max: Duration::from_secs(90) },
            first_trip_within: Duration::from_secs(10),
            cruise_kmh: (15.0, 25.0),
            light_chance: 0.3,
            light_wait: DurationRange { min: Duration::from_secs(5), max: Duration::from_secs(30) },
            faults_per_hour: 1.0,
            reboots_per_hour: 0.2,
            ambient_c: 15.0,
            battery_wh: 500.0,
            terrain: Terrain::default(),
        }
    }
}

/// Something the bike recorded, at `at` of simulated time since it was switched on.
#[derive(Clone, Debug, PartialEq)]
pub struct Output {
    pub at: Duration,
    pub body: Body,
}

/// One simulated bike: where it is, how it moves, what it has recorded.
pub struct Ride {
    settings: RideSettings,
    firmware_version: String,
    frame: Frame,
    /// Draws for routes, lights and trips: the shape of the day, the same for a seed.
    plan: StdRng,
    /// Draws for assist changes, charging, faults and reboots.
    events: StdRng,
    /// Draws for what the sensors add (GPS spells and jitter, cadence).
    noise: StdRng,
    booted: bool,
    now: Duration,
    /// Metres east and north of the centre; always on a street of the grid.
    x: f64,
    y: f64,
    dir: Dir,
    /// Metres to the next corner, along `dir`.
    to_corner: f64,
    /// m/s.
    speed: f64,
    odometer_m: f64,
    assist: u32,
    battery: Battery,
    /// Electrical power into the motor (W).
    motor_w: f64,
    motor_temp_c: f64,
    cadence_rpm: f64,
    gps: Gps,
    stage: Stage,
    next_sample: Option<Duration>,
    next_fault: Option<Duration>,
    next_reboot: Option<Duration>,
    low_charge_warned: bool,
}

enum Stage {
    Parked { until: Duration, charging: bool },
    Riding(Trip),
}

/// What happens at the next corner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Corner {
    /// Straight on, at speed.
    Through,
    /// A turn, taken at [`TURN_SPEED`].
    Turn,
    /// A red light: stop, wait, go on.
    Light,
    /// The end of the trip: stop and park.
    End,
}

struct Trip {
    id: String,
    started: Duration,
    /// From this time on, the rider makes for a stop at the next corner planned.
    ends_at: Duration,
    odometer_start: u64,
    moving_s: f64,
    max_speed: f64,
    energy_wh: f64,
    /// The rider's speed on the flat (m/s).
    cruise: f64,
    corner: Corner,
    /// The way the bike leaves the next corner.
    next_dir: Dir,
    waiting_until: Option<Duration>,
    arrived: bool,
    next_assist_change: Duration,
}

struct Gps {
    bad_until: Duration,
    no_fix: bool,
    last_read: Duration,
}

impl Ride {
    /// A bike of `firmware_version` that rides as `settings` say, its day drawn from `seed`.
    pub fn new(settings: RideSettings, firmware_version: impl Into<String>, seed: u64) -> Self {
        let mut plan = StdRng::seed_from_u64(seed);
        let mut events = StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
        let noise = StdRng::seed_from_u64(seed ^ 0xd1b5_4a32_d192_ed03);
        #[allow(clippy::cast_possible_truncation)] // a few dozen blocks
        let reach = (0.6 * settings.radius_m / settings.block_m).floor().max(0.0) as i64;
        let x = settings.block_m * plan.random_range(-reach..=reach) as f64;
        let y = settings.block_m * plan.random_range(-reach..=reach) as f64;
        let dir = Dir::ALL[plan.random_range(0..Dir::ALL.len())];
        let battery = Battery::new(settings.battery_wh, plan.random_range(35.0..=100.0), settings.ambient_c);
        // Bikes come from a fleet in service: up to a few thousand kilometres on the clock.
        let odometer_m = plan.random_range(0.0..5_000_000.0_f64).floor();
        let first_trip = Duration::from_secs_f64(plan.random_range(0.0..=settings.first_trip_within.as_secs_f64()));
        let next_fault = after(Duration::ZERO, settings.faults_per_hour, &mut events);
        let next_reboot = after(Duration::ZERO, settings.reboots_per_hour, &mut events);
        Self {
            frame: Frame::new(settings.centre),
            firmware_version: firmware_version.into(),
            plan,
            events,
            noise,
            booted: false,
            now: Duration::ZERO,
            x,
            y,
            dir,
            to_corner: settings.block_m,
            speed: 0.0,
            odometer_m,
            assist: 0,
            motor_w: 0.0,
            motor_temp_c: settings.ambient_c,
            cadence_rpm: 0.0,
            gps: Gps { bad_until: Duration::ZERO, no_fix: false, last_read: Duration::ZERO },
            stage: Stage::Parked { until: first_trip, charging: false },
            next_sample: settings.heartbeat_every.map(|_| Duration::ZERO),
            next_fault,
            next_reboot,
            low_charge_warned: false,
            battery,
            settings,
        }
    }

    /// Simulated time since the bike was switched on.
    pub fn now(&self) -> Duration {
        self.now
    }

    pub fn is_riding(&self) -> bool {
        matches!(self.stage, Stage::Riding(_))
    }

    /// Moves the bike on by `dt` and returns what it recorded meanwhile, oldest first.
    pub fn advance(&mut self, dt: Duration) -> Vec<Output> {
        let mut out = Vec::new();
        if !self.booted {
            self.booted = true;
            self.record(&mut out, Body::Boot(self.boot(ResetReason::PowerOn)));
        }
        let end = self.now + dt;
        loop {
            self.due(&mut out);
            if self.now >= end {
                return out;
            }
            let step_end = self.next_deadline().map_or(end, |deadline| deadline.min(end));
            let step_end = step_end.min(self.now + Duration::from_secs_f64(MAX_STEP_S));
            self.step((step_end - self.now).as_secs_f64());
            self.now = step_end;
        }
    }

    /// Ends the trip at once (the rider stops where they are), as when the simulator stops,
    /// so that every trip started has its end.
    pub fn park_now(&mut self) -> Vec<Output> {
        let mut out = Vec::new();
        if self.is_riding() {
            self.speed = 0.0;
            self.cadence_rpm = 0.0;
            self.motor_w = 0.0;
            self.end_trip(&mut out);
        }
        out
    }

    /// What the sensors read now, without moving the bike on.
    pub fn telemetry(&mut self) -> Telemetry {
        let (fix, hdop) = self.gps_reading();
        let jitter = if fix == GpsFix::None { 0.0 } else { 1.5 * hdop };
        let (jx, jy) = (self.noise.random_range(-1.0..=1.0) * jitter, self.noise.random_range(-1.0..=1.0) * jitter);
        let position = self.frame.to_lat_lon(self.x + jx, self.y + jy);
        let heading = (self.dir.heading_deg() + self.noise.random_range(-2.0..=2.0)).rem_euclid(360.0);
        let cadence = if self.cadence_rpm > 0.0 { self.cadence_rpm + self.noise.random_range(-3.0..=3.0) } else { 0.0 };
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // metres, never negative
        let odometer_m = self.odometer_m.floor() as u64;
        #[allow(clippy::cast_possible_truncation)] // sensor precision
        Telemetry {
            lat: position.lat,
            lon: position.lon,
            altitude_m: (self.settings.terrain.altitude_m(self.x, self.y) + jy * 0.3) as f32,
            gps_fix: fix.into(),
            hdop: hdop as f32,
            speed_kmh: (self.speed * 3.6) as f32,
            // 360 itself would be north again; f32 rounding must not reach it.
            heading_deg: if heading as f32 >= 360.0 { 0.0 } else { heading as f32 },
            battery_soc_pct: self.battery.soc_pct() as f32,
            battery_voltage_v: self.battery.voltage_v() as f32,
            battery_current_a: self.battery.current_a() as f32,
            battery_temp_c: self.battery.temp_c() as f32,
            motor_power_w: self.motor_w as f32,
            motor_temp_c: self.motor_temp_c as f32,
            assist_level: self.assist,
            cadence_rpm: cadence.clamp(0.0, 200.0) as f32,
            odometer_m,
        }
    }

    fn boot(&self, reason: ResetReason) -> Boot {
        Boot { firmware_version: self.firmware_version.clone(), reset_reason: reason.into() }
    }

    fn record(&self, out: &mut Vec<Output>, body: Body) {
        out.push(Output { at: self.now, body });
    }

    /// Whatever is due at `now`: trips starting and ending, reboots, faults, assist changes
    /// and the next telemetry packet. Calling it twice at the same time does nothing more.
    fn due(&mut self, out: &mut Vec<Output>) {
        let now = self.now;
        match &mut self.stage {
            Stage::Parked { until, .. } if *until <= now => self.start_trip(out),
            Stage::Riding(trip) if trip.arrived => self.end_trip(out),
            Stage::Riding(trip) if trip.next_assist_change <= now => {
                let level = if self.assist == 0 || self.events.random_bool(0.5) {
                    (self.assist + 1).min(MAX_ASSIST)
                } else {
                    self.assist - 1
                };
                trip.next_assist_change = now + Duration::from_secs_f64(self.events.random_range(30.0..=180.0));
                self.assist = level;
            }
            _ => {}
        }
        if self.next_reboot.is_some_and(|at| at <= now) && !self.is_riding() {
            self.next_reboot = after(now, self.settings.reboots_per_hour, &mut self.events);
            let reason = REBOOT_REASONS[self.events.random_range(0..REBOOT_REASONS.len())];
            self.record(out, Body::Boot(self.boot(reason)));
        }
        if self.next_fault.is_some_and(|at| at <= now) {
            self.next_fault = after(now, self.settings.faults_per_hour, &mut self.events);
            let (code, severity, detail) = FAULTS[self.events.random_range(0..FAULTS.len())];
            self.record(out, fault(code, severity, detail));
        }
        let soc = self.battery.soc_pct();
        if soc < LOW_CHARGE_PCT && !self.low_charge_warned {
            self.low_charge_warned = true;
            let detail = format!("state of charge {soc:.0} %, below {LOW_CHARGE_PCT:.0} %");
            self.record(out, fault("BMS_LOW_CHARGE", Severity::Warning, &detail));
        } else if soc > LOW_CHARGE_REARM_PCT {
            self.low_charge_warned = false;
        }
        if self.next_sample.is_some_and(|at| at <= now) {
            let every = if self.is_riding() { Some(self.settings.sample_every) } else { self.settings.heartbeat_every };
            self.next_sample = every.map(|every| now + every);
            let telemetry = self.telemetry();
            self.record(out, Body::Telemetry(telemetry));
        }
    }

    /// The next time something is due, after now.
    fn next_deadline(&self) -> Option<Duration> {
        let stage = match &self.stage {
            Stage::Parked { until, .. } => Some(*until),
            Stage::Riding(trip) => [trip.waiting_until, Some(trip.next_assist_change)].into_iter().flatten().min(),
        };
        [stage, self.next_sample, self.next_fault, self.next_reboot.filter(|_| !self.is_riding())]
            .into_iter()
            .flatten()
            .filter(|&at| at > self.now)
            .min()
    }

    fn start_trip(&mut self, out: &mut Vec<Output>) {
        let id = format!("{:016x}", self.plan.random::<u64>());
        let (slowest, fastest) = self.settings.cruise_kmh;
        let cruise = self.plan.random_range(slowest..=fastest.max(slowest)) / 3.6;
        let ends_at = self.now + self.settings.trip_length.sample(&mut self.plan);
        // Most riders start on a middle level.
        self.assist = [1, 2, 2, 3, 3, 4][self.events.random_range(0..6)];
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // metres, never negative
        let odometer_start = self.odometer_m.floor() as u64;
        let mut trip = Trip {
            id: id.clone(),
            started: self.now,
            ends_at,
            odometer_start,
            moving_s: 0.0,
            max_speed: 0.0,
            energy_wh: 0.0,
            cruise,
            corner: Corner::Through,
            next_dir: self.dir,
            waiting_until: None,
            arrived: false,
            next_assist_change: self.now + Duration::from_secs_f64(self.events.random_range(30.0..=180.0)),
        };
        self.plan_corner(&mut trip);
        self.stage = Stage::Riding(trip);
        self.record(out, Body::TripStart(TripStart { trip_id: id, odometer_m: odometer_start }));
        self.next_sample = Some(self.now);
    }

    fn end_trip(&mut self, out: &mut Vec<Output>) {
        let telemetry = self.telemetry();
        self.record(out, Body::Telemetry(telemetry));
        let Stage::Riding(trip) = &self.stage else { return };
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // metres, never negative
        let odometer_m = self.odometer_m.floor() as u64;
        let distance_m = odometer_m - trip.odometer_start;
        let duration_s = (self.now - trip.started).as_secs_f64();
        #[allow(clippy::cast_precision_loss)] // a trip's metres
        let avg_speed = if trip.moving_s > 0.0 { distance_m as f64 / trip.moving_s } else { 0.0 };
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // seconds of a trip
        let end = TripEnd {
            trip_id: trip.id.clone(),
            odometer_m,
            distance_m,
            duration_s: duration_s.round() as u32,
            moving_s: trip.moving_s.min(duration_s).round() as u32,
            max_speed_kmh: (trip.max_speed * 3.6) as f32,
            avg_speed_kmh: (avg_speed.min(trip.max_speed) * 3.6) as f32,
            energy_wh: trip.energy_wh as f32,
        };
        self.record(out, Body::TripEnd(end));
        let mut until = self.now + self.settings.park_length.sample(&mut self.plan);
        let soc = self.battery.soc_pct();
        let charging = soc < 10.0 || (soc < 30.0 && self.events.random_bool(0.7));
        if soc < 10.0 {
            // Nearly flat: it stays on the dock until it has 60 % again.
            let needed_wh = self.settings.battery_wh * (60.0 - soc) / 100.0;
            until = until.max(self.now + Duration::from_secs_f64(needed_wh / CHARGER_W * 3_600.0));
        }
        self.stage = Stage::Parked { until, charging };
        self.assist = 0;
        self.next_sample = self.settings.heartbeat_every.map(|every| self.now + every);
    }

    /// Decides what the bike does at the corner ahead: which way it leaves it, and whether it
    /// stops there.
    fn plan_corner(&mut self, trip: &mut Trip) {
        let (ux, uy) = self.dir.unit();
        let (cx, cy) = (self.x + ux * self.to_corner, self.y + uy * self.to_corner);
        let options = [self.dir, self.dir.left(), self.dir.right()];
        let next_dir = if cx.hypot(cy) > self.settings.radius_m && self.plan.random_bool(0.8) {
            // Out at the edge of town: head back in.
            let distance_after = |dir: &Dir| {
                let (dx, dy) = dir.unit();
                (cx + dx * self.settings.block_m).hypot(cy + dy * self.settings.block_m)
            };
            options.into_iter().min_by(|a, b| distance_after(a).total_cmp(&distance_after(b))).unwrap_or(self.dir)
        } else {
            match self.plan.random_range(0..10) {
                0 | 1 => options[1],
                2 | 3 => options[2],
                _ => options[0],
            }
        };
        let light = self.plan.random_bool(self.settings.light_chance.clamp(0.0, 1.0));
        trip.next_dir = next_dir;
        trip.corner = if self.now >= trip.ends_at || self.battery.soc_pct() < 5.0 {
            Corner::End
        } else if light {
            Corner::Light
        } else if next_dir != self.dir {
            Corner::Turn
        } else {
            Corner::Through
        };
    }

    /// Moves the physics on by `h` seconds.
    fn step(&mut self, h: f64) {
        let parked = Stage::Parked { until: Duration::ZERO, charging: false };
        match std::mem::replace(&mut self.stage, parked) {
            Stage::Parked { until, mut charging } => {
                if charging && self.battery.soc_pct() >= 95.0 {
                    charging = false;
                }
                let power = if charging { -CHARGER_W } else { STANDBY_W };
                self.battery.draw(power, h, self.settings.ambient_c);
                self.stand_still(h);
                self.stage = Stage::Parked { until, charging };
            }
            Stage::Riding(mut trip) => {
                self.ride(&mut trip, h);
                self.stage = Stage::Riding(trip);
            }
        }
    }

    fn ride(&mut self, trip: &mut Trip, h: f64) {
        let ambient = self.settings.ambient_c;
        if trip.waiting_until.is_some_and(|until| until <= self.now) {
            trip.waiting_until = None;
        }
        if trip.arrived || trip.waiting_until.is_some() {
            trip.energy_wh += self.battery.draw(ELECTRONICS_W, h, ambient);
            self.stand_still(h);
            return;
        }

        // How fast the rider wants to go here: slower uphill, faster downhill, and no faster
        // than lets them brake comfortably for the corner ahead.
        let grade = self.settings.terrain.grade(self.x, self.y, self.dir);
        let reserve = self.battery.soc_pct() < RESERVE_PCT;
        let level = if reserve { 0 } else { self.assist.min(MAX_ASSIST) };
        let flat = if reserve { trip.cruise * 0.85 } else { trip.cruise };
        let target = (flat * (1.0 - 4.0 * grade).clamp(0.6, 1.35)).min(TOP_SPEED_KMH / 3.6);
        let room = self.to_corner;
        let limit = match trip.corner {
            Corner::Through => f64::INFINITY,
            Corner::Turn => (TURN_SPEED * TURN_SPEED + 2.0 * BRAKE * room).sqrt(),
            Corner::Light | Corner::End => (2.0 * BRAKE * (room - 0.5).max(0.0)).sqrt().max(CREEP_SPEED),
        };
        let goal = target.min(limit);
        let accel_max = (0.5 + 0.12 * f64::from(level) - 3.0 * grade).max(0.15);
        let v0 = self.speed;
        let accel = if goal > v0 { ((goal - v0) / h).min(accel_max) } else { ((goal - v0) / h).max(-HARD_BRAKE) };
        let mut v1 = (v0 + accel * h).clamp(0.0, TOP_SPEED_KMH / 3.6);
        let mut ds = 0.5 * (v0 + v1) * h;

        if ds >= self.to_corner {
            let beyond = ds - self.to_corner;
            self.go(self.to_corner);
            // Exactly on the corner, so that rounding never drifts the bike off the street.
            self.x = (self.x / self.settings.block_m).round() * self.settings.block_m;
            self.y = (self.y / self.settings.block_m).round() * self.settings.block_m;
            self.dir = trip.next_dir;
            self.to_corner = self.settings.block_m;
            match trip.corner {
                Corner::End => {
                    trip.arrived = true;
                    (v1, ds) = (0.0, ds - beyond);
                }
                Corner::Light => {
                    let wait = self.settings.light_wait.sample(&mut self.plan);
                    trip.waiting_until = Some(self.now + Duration::from_secs_f64(h) + wait);
                    (v1, ds) = (0.0, ds - beyond);
                    self.plan_corner(trip);
                }
                Corner::Through | Corner::Turn => {
                    self.go(beyond);
                    self.plan_corner(trip);
                }
            }
        } else {
            self.go(ds);
        }

        // Power at the wheel, shared between rider and motor by the assist level; the motor's
        // share, through its efficiency, and the electronics drain the battery.
        let v = 0.5 * (v0 + v1);
        let force = MASS_KG * GRAVITY * (ROLLING + grade) + DRAG * v * v + MASS_KG * (v1 - v0) / h;
        let wheel_w = (force * v).max(0.0);
        let ratio = ASSIST_RATIO[level as usize];
        let fade = (ASSIST_CUTOFF_KMH - v * 3.6).clamp(0.0, 1.0);
        let motor_mech_w = (wheel_w * ratio / (1.0 + ratio) * fade).min(MOTOR_PEAK_W);
        let rider_w = wheel_w - motor_mech_w;
        self.motor_w = motor_mech_w / MOTOR_EFFICIENCY;
        trip.energy_wh += self.battery.draw(self.motor_w + ELECTRONICS_W, h, ambient);
        self.cadence_rpm = if rider_w > 15.0 && v > CREEP_SPEED { (45.0 + 2.0 * v * 3.6).min(100.0) } else { 0.0 };
        self.speed = v1;
        self.odometer_m += ds;
        if v > 0.0 {
            trip.moving_s += h;
        }
        trip.max_speed = trip.max_speed.max(v1);
        self.warm_motor(h);
    }

    fn go(&mut self, metres: f64) {
        let (ux, uy) = self.dir.unit();
        self.x += ux * metres;
        self.y += uy * metres;
        self.to_corner -= metres;
    }

    fn stand_still(&mut self, h: f64) {
        self.speed = 0.0;
        self.cadence_rpm = 0.0;
        self.motor_w = 0.0;
        self.warm_motor(h);
    }

    fn warm_motor(&mut self, h: f64) {
        let settled = self.settings.ambient_c + MOTOR_C_PER_W * self.motor_w;
        self.motor_temp_c += (settled - self.motor_temp_c) * (h / MOTOR_THERMAL_S).min(1.0);
    }

    /// The GPS's fix and HDOP now: mostly a good 3D fix, now and then a spell of a poor 2D
    /// one between tall buildings, or none at all in a tunnel.
    fn gps_reading(&mut self) -> (GpsFix, f64) {
        let since = (self.now.saturating_sub(self.gps.last_read)).as_secs_f64();
        self.gps.last_read = self.now;
        if self.now >= self.gps.bad_until && self.noise.random_bool(1.0 - (-since / GPS_SPELL_EVERY_S).exp()) {
            self.gps.bad_until = self.now + Duration::from_secs_f64(self.noise.random_range(5.0..=40.0));
            self.gps.no_fix = self.noise.random_bool(0.1);
        }
        if self.now < self.gps.bad_until {
            if self.gps.no_fix { (GpsFix::None, 99.9) } else { (GpsFix::TwoD, self.noise.random_range(2.5..=8.0)) }
        } else {
            (GpsFix::ThreeD, self.noise.random_range(0.6..=1.4))
        }
    }
}

fn fault(code: &str, severity: Severity, detail: &str) -> Body {
    Body::Fault(Fault { code: code.into(), severity: severity.into(), detail: detail.into() })
}

/// When something that happens `per_hour` times an hour on average (a Poisson process)
/// next happens after `now`; `None` if it never does.
fn after(now: Duration, per_hour: f64, rng: &mut StdRng) -> Option<Duration> {
    if per_hour.is_nan() || per_hour <= 0.0 {
        return None;
    }
    let wait_s = -(1.0 - rng.random::<f64>()).ln() * 3_600.0 / per_hour;
    Some(now + Duration::from_secs_f64(wait_s.min(1e9)))
}

#[cfg(test)]
mod tests;
