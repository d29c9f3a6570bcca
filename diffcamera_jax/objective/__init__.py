"""The contract between data and model: the device example, the flow, the prior and the losses."""
