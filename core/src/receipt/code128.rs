//! Code 128 (code set B) for receipt numbers: the symbols and their bar
//! widths, so the HTML form can draw the bars a till's scanner reads.
use alloc::vec::Vec;

/// Most characters a barcode encodes (a receipt number is an id of 64).
pub const MAX_BARCODE_CHARS: usize = 64;

/// Element widths (bar, space, bar, space, bar, space) of each symbol value
/// 0..=105, in modules (ISO/IEC 15417); the stop symbol is [`STOP`].
const PATTERNS: [&str; 106] = [
    "212222", "222122", "222221", "121223", "121322", "131222", "122213", "122312", "132212",
    "221213", "221312", "231212", "112232", "122132", "122231", "113222", "123122", "123221",
    "223211", "221132", "221231", "213212", "223112", "312131", "311222", "321122", "321221",
    "312212", "322112", "322211", "212123", "212321", "232121", "111323", "131123", "131321",
    "112313", "132113", "132311", "211313", "231113", "231311", "112133", "112331", "132131",
    "113123", "113321", "133121", "313121", "211331", "231131", "213113", "213311", "213131",
    "311123", "311321", "331121", "312113", "312311", "332111", "314111", "221411", "431111",
    "111224", "111422", "121124", "121421", "141122", "141221", "112214", "112412", "122114",
    "122411", "142112", "142211", "241211", "221114", "413111", "241112", "134111", "111242",
    "121142", "121241", "114212", "124112", "124211", "411212", "421112", "421211", "212141",
    "214121", "412121", "111143", "111341", "131141", "114113", "114311", "411113", "411311",
    "113141", "114131", "311141", "411131", "211412", "211214", "211232",
];
/// The stop symbol (seven elements, thirteen modules).
const STOP: &str = "2331112";
const START_B: usize = 104;

/// Why a text has no Code 128 B barcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarcodeError {
    Empty,
    TooLong,
    /// A character outside printable ASCII (code set B).
    NotPrintable,
}

/// The symbol values of `text` in code set B: start, data, checksum (the
/// stop is implied).
pub fn symbols(text: &str) -> Result<Vec<usize>, BarcodeError> {
    if text.is_empty() {
        return Err(BarcodeError::Empty);
    }
    if text.len() > MAX_BARCODE_CHARS {
        return Err(BarcodeError::TooLong);
    }
    let mut out = Vec::with_capacity(text.len() + 2);
    out.push(START_B);
    let mut sum = START_B;
    for (i, b) in text.bytes().enumerate() {
        if !(32..=126).contains(&b) {
            return Err(BarcodeError::NotPrintable);
        }
        let v = usize::from(b - 32);
        sum += v * (i + 1);
        out.push(v);
    }
    out.push(sum % 103);
    Ok(out)
}

/// The element widths of the whole barcode, bar first and alternating, in
/// modules (quiet zones not included).
pub fn widths(text: &str) -> Result<Vec<u8>, BarcodeError> {
    let mut out = Vec::new();
    for s in symbols(text)? {
        let p = PATTERNS.get(s).ok_or(BarcodeError::NotPrintable)?;
        out.extend(p.bytes().map(|b| b - b'0'));
    }
    out.extend(STOP.bytes().map(|b| b - b'0'));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_symbol_is_eleven_modules_and_the_stop_thirteen() {
        for p in PATTERNS {
            assert_eq!(
                p.bytes().map(|b| u32::from(b - b'0')).sum::<u32>(),
                11,
                "{p}"
            );
        }
        assert_eq!(STOP.bytes().map(|b| u32::from(b - b'0')).sum::<u32>(), 13);
    }

    #[test]
    fn checksum_follows_the_standard() {
        // 104 + 48*1 + 42*2 + 42*3 + 17*4 + 18*5 + 19*6 + 35*7 = 879; 879 % 103 = 55.
        let s = symbols("PJJ123C").unwrap();
        assert_eq!(s.first(), Some(&104));
        assert_eq!(s.last(), Some(&55));
        assert_eq!(widths("A").unwrap().len(), 6 * 3 + 7);
        assert_eq!(symbols(""), Err(BarcodeError::Empty));
        assert_eq!(symbols("é"), Err(BarcodeError::NotPrintable));
        assert_eq!(symbols(&"x".repeat(65)), Err(BarcodeError::TooLong));
    }
}
