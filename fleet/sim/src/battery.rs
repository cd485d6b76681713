//! The battery pack: a 36 V lithium-ion pack (10 cells in series) whose charge is the
//! integral of the power drawn from it. Its voltage follows the charge and sags under load,
//! the current is what the power needs at that voltage, and it warms with the current.

/// Cells in series: 10 make the common 36 V e-bike pack.
const CELLS: f64 = 10.0;
/// The pack's internal resistance (Ω): the voltage sags by `current × this`.
const RESISTANCE_OHM: f64 = 0.15;
/// How fast the pack's temperature follows its load (s).
const THERMAL_TIME_S: f64 = 900.0;
/// How many degrees above the air one ampere keeps the pack, once settled.
const WARMING_C_PER_A: f64 = 0.6;

#[derive(Clone, Debug)]
pub struct Battery {
    capacity_wh: f64,
    energy_wh: f64,
    current_a: f64,
    voltage_v: f64,
    temp_c: f64,
}

impl Battery {
    /// A pack of `capacity_wh` holding `soc_pct` of it, at the air's temperature.
    pub fn new(capacity_wh: f64, soc_pct: f64, ambient_c: f64) -> Self {
        let mut battery = Self {
            capacity_wh,
            energy_wh: capacity_wh * soc_pct.clamp(0.0, 100.0) / 100.0,
            current_a: 0.0,
            voltage_v: 0.0,
            temp_c: ambient_c,
        };
        battery.voltage_v = battery.open_circuit_v();
        battery
    }

    /// State of charge (%), 0 to 100.
    pub fn soc_pct(&self) -> f64 {
        (100.0 * self.energy_wh / self.capacity_wh).clamp(0.0, 100.0)
    }

    /// The voltage with no load: a cell runs from 3.0 V empty to 4.2 V full, with the knee
    /// below 10 % that lithium cells have.
    pub fn open_circuit_v(&self) -> f64 {
        let soc = self.soc_pct() / 100.0;
        CELLS * (3.27 + 0.93 * soc - 0.27 * (-12.0 * soc).exp())
    }

    /// The voltage at the terminals, under the last load.
    pub fn voltage_v(&self) -> f64 {
        self.voltage_v
    }

    /// The last current (A): positive while discharging, negative while charging.
    pub fn current_a(&self) -> f64 {
        self.current_a
    }

    pub fn temp_c(&self) -> f64 {
        self.temp_c
    }

    /// Draws `power_w` (negative: charges) for `dt_s` seconds and returns the energy that
    /// left the pack (Wh, negative when charging). An empty pack gives nothing (its BMS cuts
    /// off) and a full one takes nothing.
    pub fn draw(&mut self, power_w: f64, dt_s: f64, ambient_c: f64) -> f64 {
        let power_w = if (power_w > 0.0 && self.energy_wh <= 0.0) || (power_w < 0.0 && self.soc_pct() >= 100.0) {
            0.0
        } else {
            power_w
        };
        // P = V·I with V = Voc − R·I: the smaller root of R·I² − Voc·I + P = 0.
        let voc = self.open_circuit_v();
        let discriminant = (voc * voc - 4.0 * RESISTANCE_OHM * power_w).max(0.0);
        self.current_a = (voc - discriminant.sqrt()) / (2.0 * RESISTANCE_OHM);
        self.voltage_v = voc - RESISTANCE_OHM * self.current_a;
        let before = self.energy_wh;
        self.energy_wh = (self.energy_wh - power_w * dt_s / 3_600.0).clamp(0.0, self.capacity_wh);
        let settled = ambient_c + WARMING_C_PER_A * self.current_a.abs();
        self.temp_c += (settled - self.temp_c) * (dt_s / THERMAL_TIME_S).min(1.0);
        before - self.energy_wh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_charge_is_the_integral_of_the_power() {
        let mut battery = Battery::new(500.0, 80.0, 20.0);
        let mut used = 0.0;
        for _ in 0..3_600 {
            used += battery.draw(100.0, 1.0, 20.0);
        }
        assert!((used - 100.0).abs() < 1e-9, "{used}");
        assert!((battery.soc_pct() - 60.0).abs() < 1e-9);
        // Ohm's law at the terminals: the power is what was asked for.
        assert!((battery.voltage_v() * battery.current_a() - 100.0).abs() < 1e-6);
        assert!(battery.temp_c() > 20.0);
    }

    #[test]
    fn voltage_follows_the_charge_and_sags_under_load() {
        let full = Battery::new(500.0, 100.0, 20.0);
        let empty = Battery::new(500.0, 0.0, 20.0);
        assert!((full.open_circuit_v() - 42.0).abs() < 0.01);
        assert!((empty.open_circuit_v() - 30.0).abs() < 0.01);
        let mut last = 0.0;
        for soc in 0..=100 {
            let v = Battery::new(500.0, f64::from(soc), 20.0).open_circuit_v();
            assert!(v > last, "monotonic at {soc} %");
            last = v;
        }
        let mut loaded = Battery::new(500.0, 50.0, 20.0);
        loaded.draw(600.0, 1.0, 20.0);
        assert!(loaded.voltage_v() < loaded.open_circuit_v());
    }

    #[test]
    fn an_empty_pack_gives_nothing_and_charging_runs_the_current_backwards() {
        let mut battery = Battery::new(500.0, 0.01, 20.0);
        battery.draw(500.0, 3_600.0, 20.0);
        assert_eq!(battery.soc_pct(), 0.0);
        assert_eq!(battery.draw(500.0, 1.0, 20.0), 0.0);
        assert_eq!(battery.current_a(), 0.0);
        let charged = battery.draw(-150.0, 60.0, 20.0);
        assert!(charged < 0.0 && battery.current_a() < 0.0 && battery.soc_pct() > 0.0);
    }
}
