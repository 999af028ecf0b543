"""Every registered component family. Importing this package registers them all."""
from nas.blocks import (common, metaformer, mbconv, coatnet, mobilevit, efficientformer, efficientvit,  # noqa: F401
                        lightvit, smlp, swin, lsla, mobileformer, cetnet, vit)
