//! The `hang` catalog entry of one representation, read from its CMAF init
//! segment (`ftyp` + `moov`, decoded with `mp4-atom`).
//!
//! Every rendition uses the `cmaf` container: its frames are the stored
//! fragments and the init segment travels base64-encoded in the catalog, so a
//! player decodes the same bytes an LL-DASH player would append to MSE.

use bytes::{Bytes, BytesMut};
use hang::catalog::{Container, VideoConfig, AAC, H264};
use moq_mux::container::fmp4::mp4_atom::{self, Atom as _};

/// One representation as the catalog describes it.
#[derive(Debug, Clone)]
pub enum Rendition {
    /// A video track.
    Video(Box<VideoConfig>),
    /// An audio track.
    Audio(Box<hang::catalog::AudioConfig>),
}

/// What a representation's track needs besides its catalog entry.
#[derive(Debug, Clone)]
pub struct TrackSpec {
    /// Its catalog entry.
    pub rendition: Rendition,
    /// Units per second of its media times (`mdhd`).
    pub timescale: u64,
}

/// Why an init segment gives no catalog entry.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// `mp4-atom` could not read it.
    #[error("init segment: {0}")]
    Parse(#[from] moq_mux::container::fmp4::Error),
    /// A codec the catalog entry is not written for here.
    #[error("codec {0} is not published over MoQ (H.264 and AAC are)")]
    Codec(String),
    /// A sample description is missing or not unique.
    #[error("init segment has {0} sample descriptions, one is needed")]
    Descriptions(usize),
    /// Encoding the codec configuration record failed.
    #[error("codec configuration: {0}")]
    Encode(#[from] mp4_atom::Error),
    /// AAC without an AudioSpecificConfig.
    #[error("AAC track without an AudioSpecificConfig")]
    NoAudioConfig,
}

/// The catalog entry and timescale of the single track in `init`.
pub fn track_spec(init: &Bytes) -> Result<TrackSpec, CatalogError> {
    let wire = moq_mux::container::fmp4::Wire::from_init(init)?;
    let trak = wire.trak();
    let timescale = u64::from(trak.mdia.mdhd.timescale).max(1);
    let codecs = &trak.mdia.minf.stbl.stsd.codecs;
    let [codec] = codecs.as_slice() else {
        return Err(CatalogError::Descriptions(codecs.len()));
    };
    let container = Container::Cmaf { init: init.clone() };
    let rendition = match codec {
        mp4_atom::Codec::Avc1(avc1) => {
            let avcc = &avc1.avcc;
            let mut description = BytesMut::new();
            avcc.encode_body(&mut description)?;
            let mut config = VideoConfig::new(H264 {
                profile: avcc.avc_profile_indication,
                constraints: avcc.profile_compatibility,
                level: avcc.avc_level_indication,
                inline: false,
            });
            config.coded_width = Some(avc1.visual.width.into());
            config.coded_height = Some(avc1.visual.height.into());
            config.description = Some(description.freeze());
            config.optimize_for_latency = Some(true);
            config.container = container;
            Rendition::Video(Box::new(config))
        }
        mp4_atom::Codec::Mp4a(mp4a) => {
            let dec = &mp4a.esds.es_desc.dec_config;
            let specific = dec.dec_specific.as_ref().ok_or(CatalogError::NoAudioConfig)?;
            let mut config = hang::catalog::AudioConfig::new(
                AAC { profile: specific.profile },
                mp4a.audio.sample_rate.integer().into(),
                mp4a.audio.channel_count.into(),
            );
            let bitrate = dec.avg_bitrate.max(dec.max_bitrate);
            if bitrate > 0 {
                config.bitrate = Some(bitrate.into());
            }
            config.description = Some(Bytes::copy_from_slice(&specific.raw));
            config.container = container;
            Rendition::Audio(Box::new(config))
        }
        other => return Err(CatalogError::Codec(format!("{other:?}").chars().take(24).collect())),
    };
    Ok(TrackSpec { rendition, timescale })
}
