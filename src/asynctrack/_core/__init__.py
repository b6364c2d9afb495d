"""The core layer: levels, records, values, the call tree, the probe and the tracker."""
