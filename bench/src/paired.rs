//! Ratios from interleaved windows. This machine's speed drifts by a fifth over seconds, more
//! than many of the effects the benchmark looks for, so a figure and its reference are
//! measured in turns (reference, figure, reference, ..., reference) and each figure is
//! divided by the mean of the two references beside it: a drift that is steady over one
//! window's neighbours cancels, and the median keeps one disturbed window from moving the
//! result.

use serde::Serialize;

/// Each measured window over the mean of its two neighbouring reference windows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Paired {
    /// The median of the ratios, and the lowest and the highest of them.
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// How many ratios: the measured windows.
    pub pairs: usize,
}

impl Paired {
    /// `reference` has one window more than `measured`: one before each measured window and
    /// one after the last, in the order they ran. `None` without a measured window.
    pub fn new(reference: &[f64], measured: &[f64]) -> Option<Paired> {
        debug_assert_eq!(reference.len(), measured.len() + 1);
        Paired::from_ratios(
            measured
                .iter()
                .zip(reference.windows(2))
                .map(|(&m, r)| neighbour_ratio(r[0], m, r[1]))
                .collect(),
        )
    }

    /// From ratios already taken with [`neighbour_ratio`].
    pub fn from_ratios(mut ratios: Vec<f64>) -> Option<Paired> {
        ratios.sort_by(f64::total_cmp);
        let k = ratios.len();
        let median = match k {
            0 => return None,
            k if k % 2 == 1 => ratios[k / 2],
            k => (ratios[k / 2 - 1] + ratios[k / 2]) / 2.0,
        };
        Some(Paired {
            median,
            min: ratios[0],
            max: ratios[k - 1],
            pairs: k,
        })
    }
}

/// A measured window over the mean of the reference windows before and after it.
pub fn neighbour_ratio(before: f64, measured: f64, after: f64) -> f64 {
    measured / ((before + after) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::Paired;

    #[test]
    fn each_window_is_compared_with_its_neighbours() {
        // A reference drifting down from 10 to 6 with the figure at nine tenths of it: three
        // long windows would see the drift as cost, neighbours see the tenth in every pair.
        let reference = [10.0, 9.0, 8.0, 7.0, 6.0];
        let measured = [0.9 * 9.5, 0.9 * 8.5, 0.9 * 7.5, 0.9 * 6.5];
        let p = Paired::new(&reference, &measured).unwrap();
        for ratio in [p.median, p.min, p.max] {
            assert!((ratio - 0.9).abs() < 1e-12, "{p:?}");
        }
        assert_eq!(p.pairs, 4);
    }

    #[test]
    fn one_disturbed_window_moves_the_range_not_the_median() {
        let p = Paired::new(&[5.0; 4], &[5.0, 2.5, 4.5]).unwrap();
        assert_eq!((p.min, p.median, p.max), (0.5, 0.9, 1.0));
        // An even count takes the mean of the middle two.
        let p = Paired::new(&[5.0; 5], &[5.0, 2.5, 4.5, 4.0]).unwrap();
        assert!((p.median - 0.85).abs() < 1e-12, "{p:?}");
        assert_eq!(Paired::new(&[5.0], &[]), None);
    }

    #[test]
    fn ratios_taken_one_by_one_agree_with_the_windows() {
        use super::neighbour_ratio;
        let reference = [4.0, 6.0, 5.0];
        let measured = [4.5, 6.6];
        let one_by_one = vec![
            neighbour_ratio(4.0, 4.5, 6.0),
            neighbour_ratio(6.0, 6.6, 5.0),
        ];
        assert_eq!(
            Paired::from_ratios(one_by_one),
            Paired::new(&reference, &measured)
        );
        assert!((neighbour_ratio(4.0, 4.5, 6.0) - 0.9).abs() < 1e-12);
    }
}
