"""Codec bitstream knowledge: one module per codec, standard library and numpy only.

What the reader and the decoders need to know about H.264, HEVC, AV1 and VP9
bitstreams that no decoder tells them: the configuration record, which
samples are disposable non-reference pictures, the stream a bare hardware
parser accepts (NVDEC takes no extradata), the colour description and how far
frames can be reordered (``reorder_depth``).

``get_codec(name)`` gives the :class:`Codec` for an FFmpeg codec name, or None
for codecs without bitstream knowledge here. Nothing in this package imports
PyAV or torch, so the NVDEC path and the index path can use it without them.
"""

from ._av1 import AV1, Av1Config, Av1Converter, av1_config_obus, colour_info_from_av1_sequence_header, iter_obus
from ._base import Codec, NonReferenceTest, PassThrough, StreamConverter
from ._colour_info import ColourInfo, colour_info_from_vpcc, matrix_name
from ._h264 import H264, colour_info_from_h264_sps, h264_is_disposable, h264_reorder_depth, parse_avcc
from ._hevc import (
    HEVC,
    colour_info_from_hevc_sps,
    hevc_is_disposable,
    hevc_reorder_depth,
    hvcc_num_temporal_layers,
    parse_hvcc,
)
from ._nal import (
    START_CODE,
    AnnexBConverter,
    ParameterSets,
    iter_annexb_nal_units,
    iter_length_prefixed,
    length_prefixed_to_annexb,
)
from ._registry import CODECS, get_codec, non_reference_test, reorder_depth, stream_colour_info, stream_converter
from ._vp9 import VP9, Vp9Config, colour_info_from_vp9_frame

__all__ = [
    "AV1",
    "AnnexBConverter",
    "Av1Config",
    "Av1Converter",
    "CODECS",
    "Codec",
    "ColourInfo",
    "H264",
    "HEVC",
    "NonReferenceTest",
    "ParameterSets",
    "PassThrough",
    "START_CODE",
    "StreamConverter",
    "VP9",
    "Vp9Config",
    "av1_config_obus",
    "colour_info_from_av1_sequence_header",
    "colour_info_from_h264_sps",
    "colour_info_from_hevc_sps",
    "colour_info_from_vp9_frame",
    "colour_info_from_vpcc",
    "get_codec",
    "h264_is_disposable",
    "h264_reorder_depth",
    "hevc_is_disposable",
    "hevc_reorder_depth",
    "hvcc_num_temporal_layers",
    "iter_annexb_nal_units",
    "iter_length_prefixed",
    "iter_obus",
    "length_prefixed_to_annexb",
    "matrix_name",
    "non_reference_test",
    "parse_avcc",
    "parse_hvcc",
    "reorder_depth",
    "stream_colour_info",
    "stream_converter",
]
