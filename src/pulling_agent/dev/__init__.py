"""Development only, never imported in production: the demo and the embedded nx-27017
server behind ``run --embedded``."""
