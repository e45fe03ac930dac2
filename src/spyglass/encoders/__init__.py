"""Encoders turn text (and, later, images, colors, faces) into vectors.

``ENCODERS`` maps the name a collection uses to the class that implements it;
``"none"`` means the client brings its own vectors.
"""
