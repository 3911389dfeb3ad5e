"""The machinery every room uses and none owns: retrying HTTP, one worker thread for batched calls, devices and checked loading, model names, and the files users give us."""
