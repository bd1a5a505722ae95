//! Kannel and HTTP presets (Twilio, Vonage) against wiremock stubs replaying their wire shapes.
