"""deepisp: the DeepISP learned camera pipeline (Schwartz, Giryes, Bronstein) for training and phone deployment.

Pipeline stages, one module each:
    raw.py       Bayer raw file -> normalised RGGB mosaic            [H,W] float in [0,1], linear sensor RGB
    cfa.py       Bayer patterns: RGB -> mosaic, phase, flips to RGGB  [B,3,H,W] -> [B,1,H,W] (torch), [H,W,3] -> [H,W] (numpy)
    demosaic.py  RGGB mosaic -> bilinear RGB (a fixed conv)          [B,1,H,W] -> [B,3,H,W] float, linear sensor RGB
    model.py     DeepISP network (low-level + high-level stages)     [B,3,H,W] linear -> [B,3,H,W] sRGB-encoded
    color.py     sRGB <-> linear, RGB -> Lab, histogram stretch, colour constants (sRGB -> XYZ)
    losses.py    L2 (JDD) and Lab-L1 + MS-SSIM(L) (full ISP)
    metrics.py   PSNR, SSIM, CIEDE2000
    tiling.py    exact overlapping-tile inference for full frames
    data/        S7-ISP, MSR and synthetic-pair datasets
    train.py / evaluate.py / process.py / cli.py
"""

__version__ = "0.1.0"
