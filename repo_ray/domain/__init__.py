"""The negotiation world: scenarios, SOP stages, defects, the hotel simulator, data generation."""
