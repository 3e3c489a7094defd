# A join block needs manager addresses and a well-formed token.
worker {}

join {
  addresses = ["10.0.0.1"]
  token     = "SWMTKN-1-abc-def"
}
