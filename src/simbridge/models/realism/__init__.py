"""Realism branch: PixelCNN++-style likelihood models and the likelihood ratio of Zanisi+20."""
