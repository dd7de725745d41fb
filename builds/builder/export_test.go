package builder

// IssueBetween lets the tests make a certificate valid between two times
// (an expired one).
var IssueBetween = (*CA).issue
