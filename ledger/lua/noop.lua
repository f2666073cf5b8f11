-- Benchmark baseline: the cheapest script, through the same client stack.
return '=ok'
