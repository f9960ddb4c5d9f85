"""Pictures of an audit: heatmap overlays, grids, PNG encoding and the HTML page."""

from cam_audit.render.overlays import (
    PNG_COMPRESS_LEVEL,
    as_rgb,
    colormap,
    colour_bar,
    hwc_uint8,
    outline,
    overlay,
    overlay_grid,
    png_bytes,
    save_png,
    scale_for_display,
)

__all__ = [
    "PNG_COMPRESS_LEVEL",
    "as_rgb",
    "colormap",
    "colour_bar",
    "hwc_uint8",
    "outline",
    "overlay",
    "overlay_grid",
    "png_bytes",
    "save_png",
    "scale_for_display",
]
