"""View synthesis: new training views rendered from a scene (`geoposenet augment`)."""
