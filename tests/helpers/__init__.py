"""What tests share besides fixtures: fakes of the generator and PRM, scripted HTTP servers,
subprocess runners and tolerances. Importable as `helpers` (pytest puts tests/ on the path)."""
