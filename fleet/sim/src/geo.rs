//! Where the bikes ride: a point on the Earth ([`LatLon`], the `--centre`), the flat frame of
//! metres laid around it ([`Frame`]), the four ways a street of the grid runs ([`Dir`]), and
//! the lie of the land ([`Terrain`]), so that some streets climb.

use std::{f64::consts::PI, fmt, str::FromStr};

/// The most a centre may be away from the equator: the grid is laid out flat, in metres,
/// which stops working near the poles.
pub const MAX_ABS_LAT: f64 = 85.0;

const METRES_PER_DEG_LAT: f64 = 111_320.0;

/// Why a text is not a centre; the message says what would be.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidCentre(String);

/// A position in WGS 84 degrees.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatLon {
    pub lat: f64,
    pub lon: f64,
}

impl LatLon {
    /// Amsterdam's Dam square: the default city.
    pub const AMSTERDAM: LatLon = LatLon { lat: 52.3676, lon: 4.9041 };

    /// A centre for the grid: a latitude within ±[`MAX_ABS_LAT`] and a longitude within ±180.
    pub fn centre(lat: f64, lon: f64) -> Result<Self, InvalidCentre> {
        if !(lat.is_finite() && lat.abs() <= 90.0) {
            return Err(InvalidCentre(format!("latitude {lat} is not between -90 and 90")));
        }
        if lat.abs() > MAX_ABS_LAT {
            return Err(InvalidCentre(format!(
                "latitude {lat} is too close to a pole: the street grid needs a centre between -{MAX_ABS_LAT} and {MAX_ABS_LAT}"
            )));
        }
        if !(lon.is_finite() && lon.abs() <= 180.0) {
            return Err(InvalidCentre(format!("longitude {lon} is not between -180 and 180")));
        }
        Ok(Self { lat, lon })
    }
}

impl FromStr for LatLon {
    type Err = InvalidCentre;

    /// `LAT,LON` in decimal degrees, e.g. `52.3676,4.9041`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let format = || InvalidCentre(format!("`{text}` is not LAT,LON in decimal degrees, e.g. 52.3676,4.9041"));
        let (lat, lon) = text.split_once(',').ok_or_else(format)?;
        let lat: f64 = lat.trim().parse().map_err(|_| format())?;
        let lon: f64 = lon.trim().parse().map_err(|_| format())?;
        Self::centre(lat, lon)
    }
}

impl fmt::Display for LatLon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.5},{:.5}", self.lat, self.lon)
    }
}

/// Metres east (`x`) and north (`y`) of a centre, mapped to degrees by an equirectangular
/// projection: off by well under a metre across the few kilometres a city spans.
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    centre: LatLon,
    metres_per_deg_lon: f64,
}

impl Frame {
    pub fn new(centre: LatLon) -> Self {
        Self { centre, metres_per_deg_lon: METRES_PER_DEG_LAT * centre.lat.to_radians().cos() }
    }

    /// The position `x` metres east and `y` north of the centre. Longitudes wrap at the
    /// antimeridian; the grid never reaches a pole (see [`MAX_ABS_LAT`]).
    pub fn to_lat_lon(&self, x: f64, y: f64) -> LatLon {
        let lat = (self.centre.lat + y / METRES_PER_DEG_LAT).clamp(-90.0, 90.0);
        let lon = (self.centre.lon + x / self.metres_per_deg_lon + 180.0).rem_euclid(360.0) - 180.0;
        LatLon { lat, lon }
    }
}

/// The way a street of the grid runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    North,
    East,
    South,
    West,
}

impl Dir {
    pub const ALL: [Dir; 4] = [Dir::North, Dir::East, Dir::South, Dir::West];

    /// Degrees clockwise from north.
    pub fn heading_deg(self) -> f64 {
        match self {
            Dir::North => 0.0,
            Dir::East => 90.0,
            Dir::South => 180.0,
            Dir::West => 270.0,
        }
    }

    /// One metre this way, as `(east, north)`.
    pub fn unit(self) -> (f64, f64) {
        match self {
            Dir::North => (0.0, 1.0),
            Dir::East => (1.0, 0.0),
            Dir::South => (0.0, -1.0),
            Dir::West => (-1.0, 0.0),
        }
    }

    pub fn left(self) -> Dir {
        match self {
            Dir::North => Dir::West,
            Dir::East => Dir::North,
            Dir::South => Dir::East,
            Dir::West => Dir::South,
        }
    }

    pub fn right(self) -> Dir {
        self.left().left().left()
    }
}

/// The height of the land: a few gentle, overlapping waves, so that streets climb and fall
/// by a few per cent over some hundreds of metres, as in a mildly hilly city.
#[derive(Clone, Copy, Debug)]
pub struct Terrain {
    /// The mean height above sea level (m).
    pub base_m: f64,
}

/// `(amplitude m, wavelength east m, wavelength north m, phase)` of each wave.
const WAVES: [(f64, f64, f64, f64); 3] =
    [(12.0, 2_400.0, 3_100.0, 0.7), (6.0, 1_300.0, 900.0, 2.1), (2.5, 500.0, 650.0, 4.0)];

impl Default for Terrain {
    fn default() -> Self {
        Self { base_m: 25.0 }
    }
}

impl Terrain {
    /// Height above sea level (m) at `(x, y)` metres from the centre.
    pub fn altitude_m(&self, x: f64, y: f64) -> f64 {
        let waves: f64 = WAVES
            .iter()
            .map(|&(amplitude, lx, ly, phase)| {
                amplitude * (2.0 * PI * x / lx + phase).sin() * (2.0 * PI * y / ly).cos()
            })
            .sum();
        self.base_m + waves
    }

    /// The grade (rise over run, 0.03 is 3 %) at `(x, y)` going `dir`.
    pub fn grade(&self, x: f64, y: f64, dir: Dir) -> f64 {
        let (ux, uy) = dir.unit();
        let (dx, dy) = WAVES.iter().fold((0.0, 0.0), |(dx, dy), &(amplitude, lx, ly, phase)| {
            let (ax, ay) = (2.0 * PI * x / lx + phase, 2.0 * PI * y / ly);
            (dx + amplitude * 2.0 * PI / lx * ax.cos() * ay.cos(), dy - amplitude * 2.0 * PI / ly * ax.sin() * ay.sin())
        });
        dx * ux + dy * uy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_centre_is_lat_comma_lon_within_range() {
        let centre: LatLon = "52.3676, 4.9041".parse().expect("centre");
        assert_eq!(centre, LatLon::AMSTERDAM);
        for (bad, says) in [
            ("200,0", "latitude 200 is not between -90 and 90"),
            ("0,181", "longitude 181 is not between -180 and 180"),
            ("89,0", "too close to a pole"),
            ("52.3", "not LAT,LON"),
            ("north,east", "not LAT,LON"),
            ("NaN,0", "latitude NaN"),
        ] {
            let error = bad.parse::<LatLon>().expect_err(bad).to_string();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }

    #[test]
    fn metres_map_to_degrees_around_the_centre() {
        let frame = Frame::new(LatLon::AMSTERDAM);
        assert_eq!(frame.to_lat_lon(0.0, 0.0), LatLon::AMSTERDAM);
        let north = frame.to_lat_lon(0.0, 1_113.2);
        assert!((north.lat - (LatLon::AMSTERDAM.lat + 0.01)).abs() < 1e-9);
        let east = frame.to_lat_lon(1_000.0, 0.0);
        // At 52° north a degree of longitude is about 68 km.
        assert!((east.lon - LatLon::AMSTERDAM.lon - 1_000.0 / 68_000.0).abs() < 1e-3);
        let across = Frame::new(LatLon::centre(0.0, 179.99).expect("centre")).to_lat_lon(5_000.0, 0.0);
        assert!((-180.0..180.0).contains(&across.lon) && across.lon < 0.0, "{across:?}");
    }

    #[test]
    fn turning_goes_round_the_compass() {
        for dir in Dir::ALL {
            assert_eq!(dir.left().right(), dir);
            assert_eq!(dir.left().left().left().left(), dir);
            assert_eq!((dir.right().heading_deg() - dir.heading_deg()).rem_euclid(360.0), 90.0);
        }
    }

    #[test]
    fn the_grade_is_the_slope_of_the_altitude() {
        let terrain = Terrain::default();
        let mut steepest: f64 = 0.0;
        for i in 0..200 {
            let (x, y) = (f64::from(i) * 37.0 - 3_000.0, f64::from(i) * -23.0 + 1_500.0);
            for dir in Dir::ALL {
                let (ux, uy) = dir.unit();
                let numeric = (terrain.altitude_m(x + ux * 0.5, y + uy * 0.5)
                    - terrain.altitude_m(x - ux * 0.5, y - uy * 0.5))
                    / 1.0;
                let grade = terrain.grade(x, y, dir);
                assert!((numeric - grade).abs() < 1e-4, "at ({x}, {y}) {dir:?}: {numeric} vs {grade}");
                steepest = steepest.max(grade.abs());
            }
        }
        assert!(steepest > 0.02 && steepest < 0.12, "hills, not cliffs: {steepest}");
    }
}
