"""The networks (CastNet, LiteNet), the backbone registry and the checkpoint format."""
